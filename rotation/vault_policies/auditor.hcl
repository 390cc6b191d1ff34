# mail-api-auditor: reads metadata (versions, timestamps, custom_metadata = the staging-label
# summary), never values: no grant on data/, subkeys/ or any write path, and an explicit deny on
# values so no other policy attached to the same token can widen it by accident.
path "${mount}/metadata/${prefix}/*" {
  capabilities = ["read", "list"]
}
path "${mount}/metadata/${prefix}" {
  capabilities = ["list"]
}
path "${mount}/data/*" {
  capabilities = ["deny"]
}
path "${mount}/subkeys/*" {
  capabilities = ["deny"]
}
