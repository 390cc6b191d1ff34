# mail-api-consumer-${consumer}: one consuming application. Reads its own key (and its version
# metadata, to notice a rotation cheaply), writes its own acknowledgement, reads its own webhook
# signing secret (to verify pushes). Exact paths, no globs: nothing of another consumer matches.
# Unwrapping pushed wrapping tokens and renew-self come from the built-in default policy.
path "${mount}/data/${prefix}/keys/${consumer}" {
  capabilities = ["read"]
}
path "${mount}/metadata/${prefix}/keys/${consumer}" {
  capabilities = ["read"]
}
path "${mount}/data/${prefix}/acks/${consumer}" {
  capabilities = ["create", "update", "read"]
}
path "${mount}/data/${prefix}/webhooks/${consumer}" {
  capabilities = ["read"]
}
