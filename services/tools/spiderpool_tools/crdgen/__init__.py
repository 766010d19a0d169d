"""CRD manifests of ``spiderpool.spidernet.io/v2beta1``, generated from the domain's field tables.

``render`` turns each kind of ``spiderpool_controller.domain.crd_schema`` into a
CustomResourceDefinition (one YAML file per kind, deterministic: sorted keys, a "generated; do
not edit" header); ``structural`` holds the rules the real API server enforces on a CRD's schema
(the generator refuses to write a CRD that breaks one); ``__main__`` is the command behind
``make crds`` and ``make crds-verify``; ``offline`` validates manifests against the generated
files with ``jsonschema`` (a development and test tool: it needs the ``test`` extra).
"""
