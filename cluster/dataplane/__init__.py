"""Envoy as CloudMart's data plane: resources → intermediate model → Envoy v3 config.

`gateway_api`, `istio`, `kong` translate resources into `model`; `build` assembles the gateway's
and a sidecar's whole data plane; `envoy` renders the model into Envoy JSON; `proxy` validates it
with Envoy itself, runs Envoy on file-based xDS and swaps configs live.
"""
