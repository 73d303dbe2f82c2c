"""The shared words of the pure modules: one-line messages and a Deployment read as a view."""

from __future__ import annotations

from torchship_operator.vocabulary import MESSAGE_LIMIT, DeploymentView, one_line, revision_of


def test_messages_are_bounded_single_lines():
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == MESSAGE_LIMIT
    assert one_line("x" * 1000).endswith("...")
    assert one_line("abcdef", 5) == "ab..."


def test_a_deployment_view_reads_labels_spec_and_status():
    view = DeploymentView.of(
        {
            "metadata": {
                "name": "m-abc",
                "generation": 3,
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"torchship.dev/revision": "abc", "app.kubernetes.io/version": "v2"},
            },
            "spec": {"replicas": 4},
            "status": {"readyReplicas": 3, "availableReplicas": 2, "observedGeneration": 2},
        }
    )
    assert view == DeploymentView(
        "m-abc", "abc", "v2", 4, 3, 2, up_to_date=False, created="2026-01-02T03:04:05Z"
    )


def test_a_deployment_without_spec_replicas_has_the_api_servers_default_of_one():
    bare = {"metadata": {"name": "m-abc", "labels": {"torchship.dev/revision": "abc"}}}
    view = DeploymentView.of(bare)
    assert view.replicas == 1 and view.ready == 0 and view.available == 0
    assert view.up_to_date and view.version is None
    assert DeploymentView.of({**bare, "spec": {"replicas": 0}}).replicas == 0
    assert revision_of(bare) == "abc"
