# The family of an ElastiCache parameter group, from the engine and its version. ElastiCache names
# Valkey's families and Redis OSS 7's by the major version alone (valkey8, valkey7, redis7), Redis
# OSS 6's "redis6.x", and older ones by major.minor (redis5.0).
#
# No providers: scripts/check-deploy plans it offline (terraform console) against every case.

terraform {
  required_version = ">= 1.11.0"
}

variable "engine" {
  description = "valkey or redis."
  type        = string
  nullable    = false
}

variable "engine_version" {
  description = "The engine version, e.g. 8.0, 7.2, 7.1, 6.2 or 6.x."
  type        = string
  nullable    = false
}

variable "family" {
  description = "An explicit family, which wins. null = derived."
  type        = string
  default     = null
}

locals {
  parts = split(".", var.engine_version)
  major = tonumber(local.parts[0])
  derived = (
    var.engine == "valkey" || local.major >= 7 ? "${var.engine}${local.major}" :
    local.major == 6 ? "redis6.x" :
    "redis${join(".", slice(local.parts, 0, min(2, length(local.parts))))}"
  )
}

output "family" {
  description = "The parameter group family."
  value       = coalesce(var.family, local.derived)
}
