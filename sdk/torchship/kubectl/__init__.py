"""The kubectl plugin: `kubectl torchship status|history|promote|abort|rollback|wait|infer`."""
