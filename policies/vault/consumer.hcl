# mail-api-consumer-${consumer}: one consuming application. Reads its own key, writes its own
# acknowledgement, reads its own webhook signing secret. Nothing else.
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
