# mail-api-rotator: the rotation jobs. Manages its own prefix on the KV v2 mount, nothing else.
path "${mount}/data/${prefix}/*" {
  capabilities = ["create", "read", "update", "patch", "delete"]
}
path "${mount}/metadata/${prefix}/*" {
  capabilities = ["read", "list", "update", "delete"]
}
path "${mount}/delete/${prefix}/*" {
  capabilities = ["update"]
}
path "${mount}/destroy/${prefix}/*" {
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
