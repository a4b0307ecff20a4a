"""Gatekeeper policies evaluated offline with regopy (the same Rego that Gatekeeper runs).

The ConstraintTemplates and Constraints live in ``cluster/manifests/components/gatekeeper/``;
each template's ``targets[0].rego`` is the single source, evaluated by
:mod:`cluster.policies.gatekeeper` with input shaped like Gatekeeper's admission review
(``input.review.object``, ``input.parameters``).
"""
