"""The HTTP plumbing: how a request is read and how every answer is written.

Reading a body (body, json, prescan, duplicates), writing answers and errors as
JSON and problem+json (json, errors), the per-request log line and request id
(requestlog), and the published contract (openapi, docs).  Nothing here computes
gradients or decides policy: the numbers come from ``service.core``, the limits
and keys from ``service.operations``.  Neither ``service.core`` nor ``schemas``
imports this package.  This file imports nothing, so importing one module loads
only that module.
"""
