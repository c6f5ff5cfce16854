data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

# The VPC is taken from the first Lambda subnet, so the user only lists subnets.
data "aws_subnet" "lambda" {
  count = local.in_vpc ? 1 : 0
  id    = var.subnet_ids[0]
}

# The subnets of the dedup store, for their availability zones (Multi-AZ needs two).
data "aws_subnet" "redis" {
  for_each = local.create_redis ? toset(local.redis_subnet_ids) : toset([])
  id       = each.value
}

module "redis_family" {
  source = "./modules/redis-family"

  engine         = var.redis_engine
  engine_version = var.redis_engine_version
  family         = var.redis_parameter_group_family
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  # Outside a VPC only with Konnect and a dedup store reachable without one (checked on the function).
  in_vpc = length(var.subnet_ids) > 0
  vpc_id = local.in_vpc ? data.aws_subnet.lambda[0].vpc_id : null

  is_image       = var.image_uri != ""
  log_group_name = "/aws/lambda/${var.name}"
  architecture   = var.architectures[0]
  # One zip per architecture (scripts/package-lambda), so an x86_64 build is never deployed as arm64.
  lambda_zip_path = coalesce(var.lambda_zip_path, "../target/lambda/${local.architecture}/bootstrap.zip")

  # --- Kong ----------------------------------------------------------------------
  # The port the function connects to: the URL's, else the scheme's default.
  kong_url_port   = try(tonumber(regex("^https?://(?:\\[[^]]+\\]|[^/:@]+)(?::([0-9]+))?", var.kong_admin_api)[0]), null)
  kong_admin_port = coalesce(local.kong_url_port, startswith(var.kong_admin_api, "https://") ? 443 : 80)

  # --- KMS -------------------------------------------------------------------
  create_kms_key = var.kms_key_arn == ""
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  # --- Channel ---------------------------------------------------------------
  channel_arn = var.create_channel ? awscc_cloudtrail_channel.this[0].channel_arn : var.channel_arn

  # --- Kong token secret ---------------------------------------------------------
  create_kong_secret = !local.reads_konnect && var.existing_kong_admin_token_secret_arn == ""
  kong_token_secret_arn = (
    local.reads_konnect ? "" :
    local.create_kong_secret ? aws_secretsmanager_secret.kong_admin_token[0].arn : var.existing_kong_admin_token_secret_arn
  )

  # --- Redis -----------------------------------------------------------------
  create_redis             = var.existing_redis_url == ""
  redis_subnet_ids         = length(var.redis_subnet_ids) > 0 ? var.redis_subnet_ids : var.subnet_ids
  redis_availability_zones = sort(distinct([for s in data.aws_subnet.redis : s.availability_zone]))
  redis_port               = local.create_redis ? 6379 : try(tonumber(regex("^rediss?://(?:[^@/]+@)?[^:/]+:([0-9]+)", var.existing_redis_url)[0]), 6379)
  # No password in the URL: the program reads it from REDIS_PASSWORD_SECRET_ARN.
  redis_url = local.create_redis ? "rediss://${aws_elasticache_replication_group.this[0].primary_endpoint_address}:6379" : var.existing_redis_url
  redis_password_secret_arn = (
    local.create_redis ? aws_secretsmanager_secret.redis_auth_token[0].arn : var.existing_redis_password_secret_arn
  )
  has_redis_password = local.create_redis || var.existing_redis_password_secret_arn != ""

  secret_arns = compact([
    local.kong_token_secret_arn,
    local.konnect_token_secret_arn,
    local.has_redis_password ? local.redis_password_secret_arn : "",
  ])

  # The parameter group's family follows the engine and its major version (valkey8, redis7, redis6.x).
  redis_parameter_group_family = module.redis_family.family

  # --- Schedule / alarms -----------------------------------------------------
  # A queued invocation older than one period is superseded by the next run.
  max_event_age_seconds = min(max(var.schedule_period_seconds, 60), 21600)
  lag_threshold_seconds = coalesce(var.lag_alarm_threshold_seconds, 2 * var.schedule_period_seconds)
  # Only a schedule that runs can be expected to succeed.
  create_no_success_alarm = var.enable_no_success_alarm && var.schedule_enabled

  # The program refuses plain text to another machine unless told so; it is told exactly when an
  # input accepted plain text.
  allow_insecure_transport = (
    (!local.reads_konnect && var.kong_admin_api_allow_http && startswith(var.kong_admin_api, "http://")) ||
    (!local.create_redis && var.existing_redis_allow_plaintext && startswith(var.existing_redis_url, "redis://"))
  )

  # --- Environment of the program (the names are the program's interface) ----
  # Optional entries are left out rather than set to "", and only on values
  # known at plan time, so the plan shows the whole environment.
  lambda_environment = merge(
    {
      REDIS_URL               = local.redis_url
      REDIS_KEY_PREFIX        = var.redis_key_prefix
      DEADLINE_MARGIN_SECONDS = tostring(var.deadline_margin_seconds)
      DEAD_LETTER_QUEUE_URL   = aws_sqs_queue.dead_letter.url
    },
    local.source_environment,
    local.destination_environment,
    local.has_redis_password ? { REDIS_PASSWORD_SECRET_ARN = local.redis_password_secret_arn } : {},
    var.kong_root_ca_pem != "" && !local.reads_konnect ? { KONG_ROOT_CA = var.kong_root_ca_pem } : {},
    var.channel_external_id != "" && !local.to_logs ? { CHANNEL_EXTERNAL_ID = var.channel_external_id } : {},
    var.rust_log != "" ? { RUST_LOG = var.rust_log } : {},
    local.allow_insecure_transport ? { ALLOW_INSECURE_TRANSPORT = "true" } : {},
    local.signature_environment,
    local.reconcile_environment,
  )
}
