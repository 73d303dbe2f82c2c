"""Each child kind's own reconcile, one module a kind, as reconcile.py calls them in a pass:

    model_cache   the cache's claim and the Job that fills it; caches no revision mounts go
    deployments   the Service and a Deployment per revision: applied, scaled, pruned
    make_room     MakeRoom: the old pods a scale-down gives up, marked first
    hpa           the HorizontalPodAutoscaler
    httproute     trafficRouting gateway-api: the HTTPRoute and a Service per backend revision
    gpu_offer     what the nodes offer a pod waiting for its GPU
    report        the status subresource: computed, held or written, and its Event

They share `common` (the observed world, the outcome they add writes and Events to). Impure:
these talk to the API server through kube.py; what they apply comes from the pure modules.
"""
