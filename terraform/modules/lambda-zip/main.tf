# Refuses a Lambda zip that cannot run as the function's architecture, at plan time, before anything
# is deployed. Terraform cannot look inside a zip, so scripts/package-lambda does: it checks the ELF
# header of the `bootstrap` it packed and writes <zip>.json, {"architecture", "zip_sha256"}. This
# module accepts the zip only when that manifest names the configured architecture and its hash is
# the zip's own (a zip rebuilt or replaced since has no valid manifest).
#
# No providers: `terraform plan` of this module alone runs offline, which is how the test command
# checks it against the x86_64 zip it builds.

terraform {
  required_version = ">= 1.11.0"
}

variable "zip_path" {
  description = "Path of the Lambda zip (holding only `bootstrap`), built by scripts/package-lambda."
  type        = string
  nullable    = false
}

variable "architecture" {
  description = "The function's architecture: arm64 or x86_64."
  type        = string
  nullable    = false

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

locals {
  manifest_path = "${var.zip_path}.json"
  zip_exists    = fileexists(var.zip_path)
  manifest      = try(jsondecode(file(local.manifest_path)), null)
  built_for     = try(local.manifest.architecture, null)
  zip_sha256    = local.zip_exists ? filesha256(var.zip_path) : null
  build_command = "scripts/package-lambda${var.architecture == "x86_64" ? " --x86-64" : ""}"
}

output "zip_path" {
  description = "The zip, once it is known to hold a bootstrap for the architecture."
  value       = var.zip_path

  precondition {
    condition     = local.zip_exists
    error_message = "${var.zip_path} does not exist: build it from the repository root with ${local.build_command}, or set image_uri."
  }
  precondition {
    condition     = !local.zip_exists || local.manifest != null
    error_message = "${var.zip_path} has no readable manifest ${local.manifest_path}, so its architecture is unknown: build it with ${local.build_command} (or check a zip built elsewhere with scripts/package-lambda --verify-only ${var.zip_path} ${var.architecture})."
  }
  precondition {
    condition     = local.manifest == null || local.built_for == var.architecture
    error_message = "${var.zip_path} holds a bootstrap built for ${coalesce(local.built_for, "an unknown architecture")}, but the function is ${var.architecture}: every invocation would fail. Build it with ${local.build_command}, or set architectures = [\"${coalesce(local.built_for, var.architecture)}\"]."
  }
  precondition {
    condition     = local.manifest == null || try(local.manifest.zip_sha256, "") == local.zip_sha256
    error_message = "${var.zip_path} changed after its manifest was written (its SHA-256 is not the one in ${local.manifest_path}): rebuild it with ${local.build_command}."
  }
}

output "source_code_hash" {
  description = "base64 SHA-256 of the zip, for aws_lambda_function.source_code_hash."
  value       = local.zip_exists ? filebase64sha256(var.zip_path) : null
}
