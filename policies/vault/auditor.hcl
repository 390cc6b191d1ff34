# mail-api-auditor: reads metadata (versions, timestamps, staging-label summary), never values.
path "${mount}/metadata/${prefix}/*" {
  capabilities = ["read", "list"]
}
path "${mount}/metadata/${prefix}" {
  capabilities = ["list"]
}
path "${mount}/data/*" {
  capabilities = ["deny"]
}
