###############################################################################
# General
###############################################################################

variable "aws_region" {
  description = "AWS region to deploy into. null = AWS_REGION / shared config."
  type        = string
  default     = null
}

variable "name" {
  description = "Base name for every resource (Lambda function, ElastiCache replication group, queue, alarms). Lowercase letters, digits and single hyphens, starting with a letter, at most 40 characters (ElastiCache's limit)."
  type        = string
  default     = "kong-audit-shipper"

  validation {
    condition     = length(var.name) <= 40 && can(regex("^[a-z]([a-z0-9]|-[a-z0-9])*$", var.name))
    error_message = "name must start with a lowercase letter, contain only lowercase letters, digits and single hyphens, not end with a hyphen, and be at most 40 characters."
  }
}

variable "tags" {
  description = "Tags applied to every resource (provider default_tags; also copied to the CloudTrail channel when it is created)."
  type        = map(string)
  default     = {}
}

###############################################################################
# Lambda package and sizing
###############################################################################

variable "lambda_zip_path" {
  description = "Path (relative to the directory you run terraform in) of the zip built by scripts/package-lambda, which writes one zip per architecture and a manifest beside it (<zip>.json). null = ../target/lambda/<architecture>/bootstrap.zip. The plan is refused when the manifest is missing, names another architecture than `architectures`, or does not match the zip. Ignored when image_uri is set."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "ECR image (built from the repository's Dockerfile), by digest: <account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<digest>. Non-empty => the function is deployed as a container image instead of the zip. A tag (<repository>:<tag>) is accepted too, but Lambda resolves it once: pushing a new image under the same tag changes nothing here, and the function keeps the old image until image_uri itself changes."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.image_uri == "" || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9]+([._/-][a-z0-9]+)*(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$", var.image_uri))
    error_message = "image_uri must be an ECR image by digest (<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<64 hex digits>) or by tag (...:<tag>): Lambda runs images from ECR only."
  }
}

variable "architectures" {
  description = "Lambda instruction set; must match the binary. [\"arm64\"] (Graviton, cheaper) or [\"x86_64\"]."
  type        = list(string)
  default     = ["arm64"]

  validation {
    condition     = length(var.architectures) == 1 && contains(["arm64", "x86_64"], var.architectures[0])
    error_message = "architectures must be [\"arm64\"] or [\"x86_64\"]."
  }
}

variable "lambda_timeout" {
  description = "Function timeout in seconds. The program stops DEADLINE_MARGIN_SECONDS before it and leaves the dedup store consistent."
  type        = number
  default     = 900

  validation {
    condition     = var.lambda_timeout >= 60 && var.lambda_timeout <= 900
    error_message = "lambda_timeout must be between 60 and 900 seconds."
  }
}

variable "lambda_memory_size" {
  description = "Function memory in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_size >= 128 && var.lambda_memory_size <= 10240
    error_message = "lambda_memory_size must be between 128 and 10240 MB."
  }
}

variable "reserved_concurrent_executions" {
  description = "null (default) = unreserved. Overlapping runs are safe (every entry is claimed in Redis with SET NX before it is shipped), and reserving capacity fails on accounts whose unreserved pool would drop below 10 (typical for new accounts). Set 1 to cap the function at one concurrent run; an overlapping scheduled event is then throttled and retried by Lambda until it is older than the schedule period, not lost."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrent_executions == null || try(var.reserved_concurrent_executions >= 1, false)
    error_message = "reserved_concurrent_executions must be null (unreserved) or >= 1 (0 would disable the function)."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing mode of the function: Active or PassThrough."
  type        = string
  default     = "Active"

  validation {
    condition     = contains(["Active", "PassThrough"], var.tracing_mode)
    error_message = "tracing_mode must be Active or PassThrough."
  }
}

variable "rust_log" {
  description = "Optional RUST_LOG filter for the program, e.g. \"warn,kong_audit_shipper=info\". Empty = not set. Lambda's application log level stays INFO (so the EMF metric line is never dropped), which means lines below INFO are dropped by Lambda whatever this says: it can only make the logs quieter."
  type        = string
  default     = ""
  nullable    = false
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days (0 = never expire)."
  type        = number
  default     = 365

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (e.g. 365, 731, 1827, 3653, or 0 for never)."
  }
}

variable "permissions_boundary_arn" {
  description = "Optional IAM permissions boundary for the function's execution role."
  type        = string
  default     = null
}

###############################################################################
# Network
###############################################################################

variable "subnet_ids" {
  description = "Private subnets for the Lambda ENIs (and, unless redis_subnet_ids is set, for ElastiCache). They need a route to Kong's Admin API and, through a NAT gateway, to the AWS APIs: CloudTrail Data (PutAuditEvents) has no VPC endpoint (see aws_api_access). [] (no VPC) only with audit_source = \"konnect\" and an existing_redis_url reachable from outside a VPC: Konnect needs only HTTPS egress."
  type        = list(string)

  validation {
    condition     = alltrue([for s in var.subnet_ids : startswith(s, "subnet-")])
    error_message = "subnet_ids must be subnet ids (subnet-…)."
  }
}

variable "kong_admin_port" {
  description = "TCP port of the Kong Admin API the Lambda may reach (egress rule). null = the port of kong_admin_api (443 for https:// without one). When set, it must be that port: the function connects to the URL's port, and an egress rule on another one would block it."
  type        = number
  default     = null

  validation {
    condition     = var.kong_admin_port == null || try(var.kong_admin_port >= 1 && var.kong_admin_port <= 65535, false)
    error_message = "kong_admin_port must be null or a TCP port number."
  }
}

variable "kong_admin_cidrs" {
  description = "IPv4 CIDRs of the Kong control plane / Admin API load balancer (egress rule on kong_admin_port). Required with audit_source = \"kong\"."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.kong_admin_cidrs : can(cidrhost(c, 0)) && !can(regex(":", c))])
    error_message = "kong_admin_cidrs must be a list of IPv4 CIDRs."
  }
}

variable "https_egress_cidrs" {
  description = "IPv4 CIDRs the Lambda may reach on 443 for the AWS APIs (Secrets Manager, SQS, CloudTrail Data, X-Ray). Through a NAT gateway these are AWS's public endpoints, so the default is 0.0.0.0/0; narrow it only to ranges that cover the public CloudTrail Data endpoint of your region."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_egress_cidrs : can(cidrhost(c, 0)) && !can(regex(":", c))])
    error_message = "https_egress_cidrs must be IPv4 CIDRs."
  }
}

variable "aws_api_access" {
  description = "How the Lambda subnets reach the AWS APIs: \"nat\" (a NAT gateway, or another default route to the internet such as a transit gateway to a central egress VPC) or \"vpc_endpoints\" (interface endpoints only). CloudTrail Data, where PutAuditEvents goes, has no interface VPC endpoint (only the CloudTrail control plane, com.amazonaws.<region>.cloudtrail, has one), so with CloudTrail Lake as the destination only \"nat\" is accepted. With destination = \"cloudwatch_logs\", interface endpoints for logs, secretsmanager and sqs (and xray with tracing) are enough: com.amazonaws.<region>.logs, .secretsmanager, .sqs, .xray."
  type        = string
  default     = "nat"

  validation {
    condition     = contains(["nat", "vpc_endpoints"], var.aws_api_access)
    error_message = "aws_api_access must be \"nat\" or \"vpc_endpoints\"."
  }
}

###############################################################################
# Kong
###############################################################################

variable "kong_admin_api" {
  description = "Base URL of the Kong Admin API, e.g. https://kong-cp.internal:8444 (env KONG_ADMIN_API). https:// only, unless kong_admin_api_allow_http = true: over http:// the RBAC token and the whole audit trail cross the network in clear. Required with audit_source = \"kong\"."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.kong_admin_api == "" || can(regex("^https?://[^/]+", var.kong_admin_api))
    error_message = "kong_admin_api must be an http(s) URL, e.g. https://kong-cp.internal:8444."
  }
  validation {
    condition     = var.kong_admin_api == "" || startswith(var.kong_admin_api, "https://") || var.kong_admin_api_allow_http
    error_message = "kong_admin_api is http://: the Kong RBAC token and every audit entry would cross the network unencrypted. Use Kong's TLS Admin API (https://, port 8444 by default), or set kong_admin_api_allow_http = true to accept that."
  }
}

variable "kong_admin_api_allow_http" {
  description = "Accept an http:// kong_admin_api (the Kong token and the audit trail travel unencrypted). Off by default."
  type        = bool
  default     = false
  nullable    = false
}

variable "kong_admin_token" {
  description = "Kong RBAC token (Kong-Admin-Token) with read access to /audit/requests and /audit/objects. Written into a Secrets Manager secret this module creates as a write-only value: it is kept neither in the Terraform state nor in a saved plan (pass it again to `terraform apply` of a saved plan). Changing it alone changes nothing: bump kong_admin_token_version to write a new one. Or keep the token out of Terraform altogether with existing_kong_admin_token_secret_arn."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true
  ephemeral   = true
}

variable "kong_admin_token_version" {
  description = "Version of kong_admin_token. Terraform cannot see a write-only value change, so the token is written into the secret when the secret is created and whenever this number changes: bump it (with the new kong_admin_token) to rotate the token."
  type        = number
  default     = 1
  nullable    = false
}

variable "existing_kong_admin_token_secret_arn" {
  description = "ARN of an existing Secrets Manager secret whose SecretString is the Kong RBAC token. Set this instead of kong_admin_token to keep the token out of Terraform. One of the two is required."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.existing_kong_admin_token_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.existing_kong_admin_token_secret_arn))
    error_message = "existing_kong_admin_token_secret_arn must be the complete ARN of a Secrets Manager secret, ending in the 6-character suffix Secrets Manager adds to the name (arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf): IAM matches the complete ARN, so a partial one would grant nothing."
  }
}

variable "kong_root_ca_pem" {
  description = "Optional PEM of the CA that signed Kong's Admin API certificate (env KONG_ROOT_CA). Lambda limits all environment variables together to 4 KB, so keep this to one certificate."
  type        = string
  default     = ""

  validation {
    condition     = var.kong_root_ca_pem == "" || (can(regex("-----BEGIN CERTIFICATE-----", var.kong_root_ca_pem)) && length(var.kong_root_ca_pem) <= 3000)
    error_message = "kong_root_ca_pem must be PEM text (-----BEGIN CERTIFICATE-----) of at most 3000 characters (Lambda's 4 KB limit on all environment variables)."
  }
}

###############################################################################
# Konnect (audit_source = "konnect": Kong Konnect's audit log instead of Kong's)
###############################################################################

variable "audit_source" {
  description = "Which audit log the function ships: \"kong\" (Kong Gateway Enterprise's Admin API: kong_admin_api, kong_admin_cidrs, the Kong token) or \"konnect\" (Kong Konnect's audit log: konnect_api_url and the Konnect token; no route to a Kong, only HTTPS egress). Not named `source`: Terraform reserves that name in module blocks."
  type        = string
  default     = "kong"
  nullable    = false

  validation {
    condition     = contains(["kong", "konnect"], var.audit_source)
    error_message = "audit_source must be \"kong\" or \"konnect\"."
  }
}

variable "konnect_api_url" {
  description = "Konnect's API base for your organization's region (env KONNECT_API_URL): https://us.api.konghq.com, or eu, au, me, in, sg. Required with audit_source = \"konnect\"."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.konnect_api_url == "" || can(regex("^https://[^/?#]+(/[^?#]*)?$", var.konnect_api_url))
    error_message = "konnect_api_url must be an https:// base URL without a query, e.g. https://us.api.konghq.com."
  }
  validation {
    condition     = !can(regex("^https://global\\.api\\.konghq\\.com", var.konnect_api_url)) && !can(regex("/v3(/audit-logs)?/?$", var.konnect_api_url))
    error_message = "konnect_api_url must be your region's base (https://us.api.konghq.com …), not the global host and without /v3: the audit-log pull API is regional, and the program adds /v3/audit-logs."
  }
}

variable "konnect_token" {
  description = "Konnect system-account token (spat_…, recommended) or personal access token (kpat_…) whose account has the Audit Logs role Admin. Written into a Secrets Manager secret this module creates as a write-only value: kept neither in the Terraform state nor in a saved plan. Bump konnect_token_version to write a new one; or keep it out of Terraform with existing_konnect_token_secret_arn."
  type        = string
  default     = ""
  nullable    = false
  sensitive   = true
  ephemeral   = true
}

variable "konnect_token_version" {
  description = "Version of konnect_token: the token is written into the secret when the secret is created and whenever this number changes (bump it with the new token to rotate)."
  type        = number
  default     = 1
  nullable    = false
}

variable "existing_konnect_token_secret_arn" {
  description = "ARN of an existing Secrets Manager secret whose SecretString is the Konnect token. Set this instead of konnect_token to keep the token out of Terraform. With audit_source = \"konnect\", one of the two is required."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.existing_konnect_token_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.existing_konnect_token_secret_arn))
    error_message = "existing_konnect_token_secret_arn must be the complete ARN of a Secrets Manager secret, ending in the 6-character suffix Secrets Manager adds to the name: IAM matches the complete ARN."
  }
}

variable "konnect_settle_seconds" {
  description = "Each run reads Konnect's entries stamped up to this long before it starts (env KONNECT_SETTLE_SECONDS)."
  type        = number
  default     = 60
  nullable    = false

  validation {
    condition     = var.konnect_settle_seconds >= 0
    error_message = "konnect_settle_seconds must be >= 0."
  }
}

variable "konnect_overlap_seconds" {
  description = "How far before the stored watermark each run re-reads Konnect, for entries that appear late (env KONNECT_OVERLAP_SECONDS)."
  type        = number
  default     = 600
  nullable    = false

  validation {
    condition     = var.konnect_overlap_seconds >= 0
    error_message = "konnect_overlap_seconds must be >= 0."
  }
}

variable "konnect_retention_seconds" {
  description = "How long Konnect keeps its audit log (env KONNECT_RETENTION_SECONDS; 7 days today). Marks live that long past each entry, and no read reaches further back. Raise it when Konnect's retention grows."
  type        = number
  default     = 604800
  nullable    = false

  validation {
    condition     = var.konnect_retention_seconds >= 3600
    error_message = "konnect_retention_seconds must be at least 3600 (an hour)."
  }
}

###############################################################################
# CloudTrail Lake channel
###############################################################################

variable "channel_arn" {
  description = "ARN of the CloudTrail Lake channel (source Custom) events are put to (env CHANNEL_ARN). Required unless create_channel = true."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.channel_arn == "" || can(regex("^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:[0-9]{12}:channel/.+$", var.channel_arn))
    error_message = "channel_arn must look like arn:aws:cloudtrail:<region>:<account>:channel/<id>."
  }
}

variable "channel_external_id" {
  description = "Optional external ID required by the channel's resource policy (env CHANNEL_EXTERNAL_ID)."
  type        = string
  default     = ""
}

variable "create_channel" {
  description = "Create the channel with the awscc provider (source Custom) pointing at event_data_store_arn. The event data store itself is never created by this module."
  type        = bool
  default     = false
}

variable "channel_name" {
  description = "Name of the channel when create_channel = true (3-128 of [a-zA-Z0-9._-]). Empty = var.name."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.channel_name == "" || can(regex("^[a-zA-Z0-9._-]{3,128}$", var.channel_name))
    error_message = "channel_name must be 3-128 characters of [a-zA-Z0-9._-]."
  }
}

variable "event_data_store_arn" {
  description = "ARN of an existing CloudTrail Lake event data store (category ActivityAuditLog): the one the created channel delivers to (create_channel = true), and the one reconcile queries (env EVENT_DATA_STORE; the role may query this store only). Empty with an existing channel: reconcile finds the store with GetChannel, and the role may query any event data store of the channel's account and region."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.event_data_store_arn == "" || can(regex("^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:[0-9]{12}:eventdatastore/.+$", var.event_data_store_arn))
    error_message = "event_data_store_arn must look like arn:aws:cloudtrail:<region>:<account>:eventdatastore/<id>."
  }
}

###############################################################################
# Program tuning (passed as environment variables)
###############################################################################

variable "redis_key_prefix" {
  description = "Prefix of every key the program writes in Redis (env REDIS_KEY_PREFIX). Change it to share one Redis between several Kong clusters."
  type        = string
  default     = "kong-audit-shipper:"
}

variable "deadline_margin_seconds" {
  description = "The program stops claiming new work this many seconds before the Lambda deadline (env DEADLINE_MARGIN_SECONDS)."
  type        = number
  default     = 60

  validation {
    condition     = var.deadline_margin_seconds >= 5 && var.deadline_margin_seconds < 900
    error_message = "deadline_margin_seconds must be between 5 and 899."
  }
}

variable "overlap_seconds" {
  description = "How far before the stored watermark each run re-reads Kong (env OVERLAP_SECONDS); already shipped entries are skipped by the Redis claims."
  type        = number
  default     = 300

  validation {
    condition     = var.overlap_seconds >= 0
    error_message = "overlap_seconds must be >= 0."
  }
}

###############################################################################
# Redis (dedup store)
###############################################################################

variable "existing_redis_url" {
  description = "Use an existing Redis/Valkey instead of creating ElastiCache: rediss://[user@]host[:port][/db] (TLS), or redis:// with existing_redis_allow_plaintext = true. No password in the URL; put it in a secret and pass existing_redis_password_secret_arn. Empty = the module creates ElastiCache."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.existing_redis_url == "" || can(regex("^rediss?://([^:@/]+@)?[^:@/]+(:[0-9]{1,5})?(/[0-9]+)?$", var.existing_redis_url))
    error_message = "existing_redis_url must be redis(s)://[user@]host[:port][/db] without a password."
  }
  validation {
    condition     = !startswith(var.existing_redis_url, "redis://") || var.existing_redis_allow_plaintext
    error_message = "existing_redis_url is redis:// (no TLS): the Redis password and every claim would cross the network in clear. Use rediss://, or set existing_redis_allow_plaintext = true to accept that."
  }
}

variable "existing_redis_allow_plaintext" {
  description = "Accept a redis:// (plain-text) existing_redis_url. Off by default."
  type        = bool
  default     = false
  nullable    = false
}

variable "existing_redis_password_secret_arn" {
  description = "ARN of a Secrets Manager secret whose SecretString is the password / AUTH token of existing_redis_url. Optional."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.existing_redis_password_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.existing_redis_password_secret_arn))
    error_message = "existing_redis_password_secret_arn must be the complete ARN of a Secrets Manager secret, ending in the 6-character suffix Secrets Manager adds to the name (arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf): IAM matches the complete ARN, so a partial one would grant nothing."
  }
}

variable "redis_cidrs" {
  description = "IPv4 CIDRs of existing_redis_url's nodes (egress rule from the Lambda). Required with existing_redis_url."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.redis_cidrs : can(cidrhost(c, 0)) && !can(regex(":", c))])
    error_message = "redis_cidrs must be IPv4 CIDRs."
  }
}

variable "redis_engine" {
  description = "ElastiCache engine: valkey or redis."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.redis_engine)
    error_message = "redis_engine must be valkey or redis."
  }
}

variable "redis_engine_version" {
  description = "ElastiCache engine version: \"8.0\" (Valkey 8, the default) or \"7.2\" for valkey; \"7.1\", \"7.0\" or \"6.2\" for redis. Pinned because engine = \"valkey\" without a version fails on create, and because the parameter group's family follows it. A group already running another version: set that one (ElastiCache does not go back a version)."
  type        = string
  default     = "8.0"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.([0-9]+|x)(\\.[0-9]+)?$", var.redis_engine_version))
    error_message = "redis_engine_version must be a version like 8.0, 7.2, 7.1 or 6.2."
  }
  validation {
    condition     = var.redis_engine != "redis" || try(tonumber(split(".", var.redis_engine_version)[0]) <= 7, true)
    error_message = "redis_engine = \"redis\" runs Redis OSS 7.1 at most: set redis_engine_version to 7.1, 7.0 or 6.2 (8.0, the default, is Valkey's)."
  }
  validation {
    condition     = var.redis_engine != "valkey" || try(tonumber(split(".", var.redis_engine_version)[0]) >= 7, true)
    error_message = "redis_engine = \"valkey\" starts at Valkey 7.2: set redis_engine_version to 8.0 or 7.2."
  }
}

variable "redis_parameter_group_family" {
  description = "Family of the parameter group the module creates (it sets maxmemory-policy = noeviction). null = derived from redis_engine and redis_engine_version: valkey 8.x -> valkey8, valkey 7.x -> valkey7, redis 7.x -> redis7, redis 6.x -> redis6.x. Set it only for a family the derivation does not know."
  type        = string
  default     = null

  validation {
    condition     = var.redis_parameter_group_family == null || can(regex("^(valkey[0-9]+|redis[0-9]+(\\.([0-9]+|x))?)$", var.redis_parameter_group_family))
    error_message = "redis_parameter_group_family must be an ElastiCache family like valkey8, valkey7, redis7 or redis6.x."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_num_cache_clusters" {
  description = "Number of nodes (1 primary + replicas). 2 or more enables Multi-AZ automatic failover; the dedup state is what prevents duplicates in CloudTrail Lake, so losing it matters. 1 is cheaper, for test stacks."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 1 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters must be between 1 and 6."
  }
}

variable "redis_subnet_ids" {
  description = "Subnets for the ElastiCache subnet group. [] = subnet_ids. With redis_num_cache_clusters >= 2 they must span two or more availability zones (the plan checks the zones, not the number of subnets)."
  type        = list(string)
  default     = []
}

variable "redis_snapshot_retention_days" {
  description = "Days ElastiCache keeps daily snapshots (0 disables them)."
  type        = number
  default     = 7

  validation {
    condition     = var.redis_snapshot_retention_days >= 0 && var.redis_snapshot_retention_days <= 35
    error_message = "redis_snapshot_retention_days must be between 0 and 35."
  }
}

variable "redis_snapshot_window" {
  description = "Daily snapshot window (UTC), e.g. \"03:00-04:00\". null = chosen by AWS."
  type        = string
  default     = null
}

variable "redis_maintenance_window" {
  description = "Weekly maintenance window, e.g. \"sun:05:00-sun:06:00\". null = chosen by AWS."
  type        = string
  default     = null
}

variable "redis_apply_immediately" {
  description = "Apply ElastiCache changes immediately instead of in the next maintenance window."
  type        = bool
  default     = false
}

###############################################################################
# Encryption and secrets
###############################################################################

variable "kms_key_arn" {
  description = "Customer managed KMS key used for the secrets, the log group, the dead-letter queue, ElastiCache and the Lambda environment. Empty = the module creates one (rotation enabled). A key you pass must allow logs.<region>.amazonaws.com to use it for this function's log group."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.kms_key_arn == "" || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period before the module-created KMS key is deleted after destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_days >= 7 && var.kms_key_deletion_window_days <= 30
    error_message = "kms_key_deletion_window_days must be between 7 and 30."
  }
}

variable "additional_kms_key_arns" {
  description = "Other KMS keys the function may decrypt with, e.g. the customer managed key of an existing secret passed in existing_*_secret_arn."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.additional_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", k))])
    error_message = "additional_kms_key_arns must be KMS key ARNs (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "secret_recovery_window_days" {
  description = "Recovery window of the secrets this module creates (0 = delete at once on destroy)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

###############################################################################
# Schedule
###############################################################################

variable "schedule_expression" {
  description = "EventBridge schedule of the function, rate() or cron()."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be rate(...) or cron(...)."
  }
}

variable "schedule_period_seconds" {
  description = "The schedule's period in seconds (3600 for rate(1 hour)). Used for the alarms' periods, the lag threshold and the maximum age of a queued invocation; keep it in line with schedule_expression."
  type        = number
  default     = 3600

  validation {
    condition     = var.schedule_period_seconds >= 60 && var.schedule_period_seconds <= 86400 && var.schedule_period_seconds % 60 == 0
    error_message = "schedule_period_seconds must be a multiple of 60 between 60 and 86400."
  }
}

variable "schedule_enabled" {
  description = "false = create the rule disabled, and no no-success alarm: for the first apply, while the first run is made by hand (see \"First run\" in terraform/README.md), or while a CLI backfill runs."
  type        = bool
  default     = true
}

###############################################################################
# Alarms
###############################################################################

variable "alarm_sns_topic_arns" {
  description = "SNS topics notified when an alarm fires or clears. [] = alarms without actions."
  type        = list(string)
  default     = []
}

variable "enable_lag_alarm" {
  description = "Alarm when the program's LagSeconds metric exceeds lag_alarm_threshold_seconds."
  type        = bool
  default     = true
}

variable "lag_alarm_threshold_seconds" {
  description = "LagSeconds above which the lag alarm fires. LagSeconds is the age of the oldest entry a run knows is not shipped (failed, held by another run, or not read before the run's time ran out), 0 when everything it read is shipped; a quiet Kong keeps it at 0. null = 2 x schedule_period_seconds: an entry still unshipped after two runs."
  type        = number
  default     = null
}

variable "enable_no_success_alarm" {
  description = "Alarm when no invocation succeeded for no_success_alarm_periods schedule periods in a row (also fires when the schedule stops invoking the function). Created only while schedule_enabled = true: with the schedule off there is nothing to expect."
  type        = bool
  default     = true
}

variable "dead_letter_age_alarm_days" {
  description = "Alarm when the oldest letter in the dead-letter queue is older than this many days. The queue keeps letters 14 days (SQS's maximum), less than Kong's 30-day retention: redrive before they expire. 0 = no alarm."
  type        = number
  default     = 7

  validation {
    condition     = var.dead_letter_age_alarm_days >= 0 && var.dead_letter_age_alarm_days < 14
    error_message = "dead_letter_age_alarm_days must be between 0 (no alarm) and 13: the queue keeps letters 14 days."
  }
}

variable "no_success_alarm_periods" {
  description = "Consecutive schedule periods without a successful invocation before the no-success alarm fires."
  type        = number
  default     = 3

  validation {
    condition     = var.no_success_alarm_periods >= 1 && var.no_success_alarm_periods <= 24
    error_message = "no_success_alarm_periods must be between 1 and 24."
  }
}
