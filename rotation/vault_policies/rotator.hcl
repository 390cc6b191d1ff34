# mail-api-rotator: the rotation jobs. Manages its own prefix on the KV v2 mount, nothing else.
# Values: create, read, update (check-and-set writes), patch, soft-delete. Never destroy: a
# destroyed version is a lost key value (invariant: no key value is ever lost).
path "${mount}/data/${prefix}/*" {
  capabilities = ["create", "read", "update", "patch", "delete"]
}
# Metadata: read versions, list consumers, update custom_metadata (the label summary). No "delete"
# here: deleting metadata destroys every version permanently.
path "${mount}/metadata/${prefix}/*" {
  capabilities = ["read", "list", "update"]
}
# OpenBao only: every record's metadata (the status digest) in one LIST, for status and plan
# (HashiCorp Vault has no such endpoint; the rotator then reads records one by one).
path "${mount}/detailed-metadata/${prefix}/*" {
  capabilities = ["list"]
}
path "${mount}/delete/${prefix}/*" {
  capabilities = ["update"]
}
path "${mount}/undelete/${prefix}/*" {
  capabilities = ["update"]
}
# Mount options (KV version, cas_required) are checked at start-up through
# sys/internal/ui/mounts, which the built-in default policy already grants.
path "${mount}/config" {
  capabilities = ["read"]
}
# Response wrapping for webhook pushes, and tamper checks on the tokens it issued.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}
