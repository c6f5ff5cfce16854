# Kong RBAC token -----------------------------------------------------------------

resource "aws_secretsmanager_secret" "kong_admin_token" {
  count = local.create_kong_secret ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The value is a Kong RBAC token; rotating it needs a change in Kong (new token on the RBAC user), which Secrets Manager rotation cannot do. Rotate it in Kong, then update kong_admin_token.

  # name_prefix: a destroyed secret keeps its name during the recovery window,
  # a fixed name would block re-creating the stack.
  name_prefix             = "${var.name}/kong-admin-token-"
  description             = "Kong Admin API RBAC token read by ${var.name} (env KONG_ADMIN_TOKEN_SECRET_ARN)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

# Write-only (Terraform >= 1.11): the token goes to Secrets Manager and is kept neither in the state
# nor in a saved plan. Terraform cannot tell when a write-only value changes, so it is written when
# the secret is created and whenever kong_admin_token_version changes.
resource "aws_secretsmanager_secret_version" "kong_admin_token" {
  count = local.create_kong_secret ? 1 : 0

  secret_id                = aws_secretsmanager_secret.kong_admin_token[0].id
  secret_string_wo         = var.kong_admin_token
  secret_string_wo_version = var.kong_admin_token_version

  lifecycle {
    precondition {
      condition     = var.kong_admin_token != ""
      error_message = "Set kong_admin_token (the Kong RBAC token), or existing_kong_admin_token_secret_arn to use a secret you manage."
    }
  }
}

# Redis / Valkey AUTH token ------------------------------------------------------
# Kept in the Terraform state in plain text (random_password's result, the replication group's
# auth_token and this secret version's secret_string): the trade-off of a token Terraform generates
# and hands to two resources. It opens only the dedup store,
# reachable only from the function's security group; protect the state (encrypted backend, restricted
# access) as you would the token, or bring your own Redis and secret (existing_redis_url,
# existing_redis_password_secret_arn) to keep it out of Terraform.

resource "random_password" "redis_auth_token" {
  count = local.create_redis ? 1 : 0

  # ElastiCache AUTH tokens: 16-128 printable characters, and the only special
  # characters allowed are ! & # $ ^ < > -
  length           = 64
  special          = true
  override_special = "!&#$^<>-"
  min_lower        = 1
  min_upper        = 1
  min_numeric      = 1
}

resource "aws_secretsmanager_secret" "redis_auth_token" {
  count = local.create_redis ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The value is the ElastiCache AUTH token; changing it needs ModifyReplicationGroup with a ROTATE/SET strategy, which a Secrets Manager rotation Lambda does not do here. Rotate with terraform (taint random_password.redis_auth_token, apply).

  name_prefix             = "${var.name}/redis-auth-token-"
  description             = "AUTH token of the ${var.name} ElastiCache replication group (env REDIS_PASSWORD_SECRET_ARN)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "redis_auth_token" {
  count = local.create_redis ? 1 : 0

  secret_id     = aws_secretsmanager_secret.redis_auth_token[0].id
  secret_string = random_password.redis_auth_token[0].result
}
