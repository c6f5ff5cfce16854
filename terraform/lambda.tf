resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

# A zip is checked before anything is deployed: its bootstrap must be built for the function's
# architecture (modules/lambda-zip reads the manifest scripts/package-lambda writes beside it).
module "lambda_zip" {
  source = "./modules/lambda-zip"
  count  = local.is_image ? 0 : 1

  zip_path     = local.lambda_zip_path
  architecture = local.architecture
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:Failed scheduled invocations carry no data (the event is only "run now") and async retries are off on purpose: the next scheduled run re-reads the same window and the Redis claims make that safe. Failures are alarmed (Errors, no-success alarm); rejected entries have their own dead-letter queue (DEAD_LETTER_QUEUE_URL).
  #checkov:skip=CKV_AWS_115:Reserved concurrency is optional (var.reserved_concurrent_executions, default unreserved): concurrent runs are harmless because every entry is claimed with Redis SET NX before it is shipped, and reserving capacity fails on accounts with the minimum concurrency quota.
  #checkov:skip=CKV_AWS_272:The artifact is built by this repository's CI (cargo lambda build / Dockerfile) and deployed by the same pipeline; AWS Signer code signing needs a signing profile outside this module. Deployers who use Signer can add code_signing_config_arn.

  function_name = var.name
  description   = "Ships ${local.reads_konnect ? "Kong Konnect audit log" : "Kong Gateway Enterprise Admin API audit"} entries to ${local.to_logs ? "CloudWatch Logs (PutLogEvents)" : "CloudTrail Lake (PutAuditEvents)"}"
  role          = aws_iam_role.this.arn
  architectures = var.architectures
  timeout       = var.lambda_timeout
  memory_size   = var.lambda_memory_size

  # Zip (default) or container image built from the repository's Dockerfile.
  package_type     = local.is_image ? "Image" : "Zip"
  image_uri        = local.is_image ? var.image_uri : null
  runtime          = local.is_image ? null : "provided.al2023"
  handler          = local.is_image ? null : "bootstrap"
  filename         = local.is_image ? null : module.lambda_zip[0].zip_path
  source_code_hash = local.is_image ? null : module.lambda_zip[0].source_code_hash

  reserved_concurrent_executions = var.reserved_concurrent_executions

  kms_key_arn = local.kms_key_arn
  environment {
    variables = local.lambda_environment
  }

  # Outside a VPC (subnet_ids = [], Konnect only) the function reaches HTTPS endpoints directly.
  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  tracing_config {
    mode = var.tracing_mode
  }

  # Lambda sets AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL from this.
  # The application level stays INFO: the program's EMF metric line has no
  # level (Lambda counts it as INFO) and a higher level would drop the metrics.
  # The system level stays INFO too: platform.start and platform.report (the
  # START/REPORT lines: duration, billed duration, memory used, init time,
  # timeouts) are INFO events, and WARN would drop them.
  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "INFO"
    log_group             = aws_cloudwatch_log_group.this.name
  }

  depends_on = [
    # ENI permissions must exist before Lambda creates the VPC attachment.
    aws_iam_role_policy.this,
    aws_iam_role_policy.cloudwatch_logs,
    aws_secretsmanager_secret_version.kong_admin_token,
    aws_secretsmanager_secret_version.konnect_token,
    aws_secretsmanager_secret_version.redis_auth_token,
  ]

  lifecycle {
    precondition {
      condition     = local.to_logs || (var.create_channel ? var.channel_arn == "" : var.channel_arn != "")
      error_message = "Set channel_arn (an existing channel), or create_channel = true with event_data_store_arn, but not both (or destination = \"cloudwatch_logs\")."
    }
    precondition {
      condition     = !local.in_vpc || local.create_redis || length(var.redis_cidrs) > 0
      error_message = "existing_redis_url needs redis_cidrs (the Redis nodes' CIDRs) so the Lambda security group can reach them."
    }
    precondition {
      condition     = local.in_vpc || (local.reads_konnect && !local.create_redis)
      error_message = "subnet_ids may be empty (no VPC) only with audit_source = \"konnect\" and an existing_redis_url reachable from outside a VPC: Kong's Admin API and the ElastiCache this module creates are reached inside a VPC."
    }
    precondition {
      condition     = local.reads_konnect || (var.kong_admin_api != "" && length(var.kong_admin_cidrs) > 0)
      error_message = "audit_source = \"kong\" needs kong_admin_api (Kong's Admin API URL) and kong_admin_cidrs (where it is, for the egress rule)."
    }
    precondition {
      condition     = !local.reads_konnect || (var.konnect_api_url != "" && var.kong_admin_api == "")
      error_message = "audit_source = \"konnect\" needs konnect_api_url (your region's https://<region>.api.konghq.com), and kong_admin_api left empty: one function reads one audit log."
    }
    precondition {
      # Konnect is on the internet: interface endpoints cannot reach it.
      condition     = !local.in_vpc || !local.reads_konnect || var.aws_api_access == "nat"
      error_message = "audit_source = \"konnect\" in a VPC needs a route to the internet for Konnect's API (HTTPS): set aws_api_access = \"nat\" and give the subnets a NAT gateway, or run the function outside a VPC (subnet_ids = [] with an existing_redis_url reachable from there)."
    }
    precondition {
      # CloudTrail Data (PutAuditEvents) has no interface VPC endpoint: only
      # the control plane, com.amazonaws.<region>.cloudtrail, has one.
      # CloudWatch Logs does (com.amazonaws.<region>.logs).
      condition     = !local.in_vpc || local.to_logs || var.aws_api_access == "nat"
      error_message = "aws_api_access = \"vpc_endpoints\" cannot reach CloudTrail Lake: CloudTrail Data (cloudtrail-data.<region>.amazonaws.com, where PutAuditEvents goes) has no interface VPC endpoint. Give the Lambda subnets a NAT gateway (or another route to the internet) and set aws_api_access = \"nat\"."
    }
    precondition {
      condition     = var.kong_admin_token == "" || var.existing_kong_admin_token_secret_arn == ""
      error_message = "Set either kong_admin_token or existing_kong_admin_token_secret_arn, not both."
    }
    precondition {
      condition     = var.konnect_token == "" || var.existing_konnect_token_secret_arn == ""
      error_message = "Set either konnect_token or existing_konnect_token_secret_arn, not both."
    }
    precondition {
      # Lambda refuses an environment over 4 KB, keys and values together, as the JSON of the map
      # (here measured the same way, which over-counts a little: a PEM's newlines are two bytes).
      # Checked at plan when every value is known, else at apply before the function is touched.
      condition     = length(jsonencode(local.lambda_environment)) <= 4096
      error_message = "The function's environment is ${length(jsonencode(local.lambda_environment))} bytes, over Lambda's 4 KB (4096) for all variables together; characters per variable: ${join(", ", [for k, v in local.lambda_environment : "${k} ${length(v)}"])}. Shorten the largest: kong_root_ca_pem (one CA certificate) or kong_audit_signing_public_key (only the keys still in use)."
    }
  }
}

# A tag is resolved once, when the function is created or image_uri changes: a new image pushed
# under the same tag is never deployed. Warn (a check, not an error) so the plan says so.
check "image_by_digest" {
  assert {
    condition     = var.image_uri == "" || strcontains(var.image_uri, "@sha256:")
    error_message = "image_uri ${var.image_uri} names a tag: Lambda keeps the image the tag named when the function was last updated, and pushing a new image under the same tag redeploys nothing. Deploy by digest (…@sha256:<digest>, printed by `docker buildx build --push` or `aws ecr describe-images`)."
  }
}

# Scheduled events are invoked asynchronously. No retries: a failed run's
# window is re-read by the next run, and a retry would only overlap it.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = local.max_event_age_seconds
}
