"""Upstream adapters, one per way of reaching Google: each turns an UpstreamCall into an HTTP
call and the answer into an Answer, a StreamStart or a Failure (with the classifier's verdict).

Adapters report what they saw; only rotator.pool changes marks.
"""
