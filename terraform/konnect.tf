###############################################################################
# Source: Kong Konnect's audit log instead of Kong's Admin API
#
# With audit_source = "konnect" the function reads Konnect's GET /v3/audit-logs
# of one region (konnect_api_url) with a token kept in Secrets Manager. It needs
# no route to a Kong: only HTTPS egress (Konnect, the AWS APIs) and its dedup
# store. In subnets, that is a NAT gateway; outside a VPC (subnet_ids = []),
# with a dedup store reachable from there, nothing else.
###############################################################################

locals {
  reads_konnect = var.audit_source == "konnect"

  create_konnect_secret = local.reads_konnect && var.existing_konnect_token_secret_arn == ""
  konnect_token_secret_arn = (
    !local.reads_konnect ? "" :
    local.create_konnect_secret ? aws_secretsmanager_secret.konnect_token[0].arn : var.existing_konnect_token_secret_arn
  )

  # The source's part of the function's environment: the program reads one or the other.
  source_environment = local.reads_konnect ? {
    KONNECT_API_URL           = var.konnect_api_url
    KONNECT_TOKEN_SECRET_ARN  = local.konnect_token_secret_arn
    KONNECT_SETTLE_SECONDS    = tostring(var.konnect_settle_seconds)
    KONNECT_OVERLAP_SECONDS   = tostring(var.konnect_overlap_seconds)
    KONNECT_RETENTION_SECONDS = tostring(var.konnect_retention_seconds)
    } : {
    KONG_ADMIN_API              = var.kong_admin_api
    KONG_ADMIN_TOKEN_SECRET_ARN = local.kong_token_secret_arn
    OVERLAP_SECONDS             = tostring(var.overlap_seconds)
  }
}

resource "aws_secretsmanager_secret" "konnect_token" {
  count = local.create_konnect_secret ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The value is a Konnect token; rotating it needs a new token in Konnect (system account or personal access token), which Secrets Manager rotation cannot make. Rotate it in Konnect, then update konnect_token and konnect_token_version.

  name_prefix             = "${var.name}/konnect-token-"
  description             = "Konnect audit-log token read by ${var.name} (env KONNECT_TOKEN_SECRET_ARN)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

# Write-only (Terraform >= 1.11), as the Kong token: neither in the state nor in a saved plan.
resource "aws_secretsmanager_secret_version" "konnect_token" {
  count = local.create_konnect_secret ? 1 : 0

  secret_id                = aws_secretsmanager_secret.konnect_token[0].id
  secret_string_wo         = var.konnect_token
  secret_string_wo_version = var.konnect_token_version

  lifecycle {
    precondition {
      condition     = var.konnect_token != ""
      error_message = "Set konnect_token (a Konnect token with the Audit Logs role Admin), or existing_konnect_token_secret_arn to use a secret you manage."
    }
  }
}

output "audit_source" {
  description = "Which audit log the function ships: kong or konnect."
  value       = var.audit_source
}

output "konnect_token_secret_arn" {
  description = "ARN of the secret holding the Konnect token (null unless audit_source = \"konnect\")."
  value       = local.reads_konnect ? local.konnect_token_secret_arn : null
}
