terraform {
  # 1.11: write-only arguments, so the Kong token (an ephemeral variable) is
  # written into its secret without being kept in the state or a saved plan.
  # 1.9 (included) lets a variable's validation refer to other variables.
  required_version = ">= 1.11.0"

  required_providers {
    # Major 6. At least 6.8: older 6.x releases cap the SQS max_message_size
    # at 256 KiB, and the dead-letter queue takes whole entries up to 1 MiB.
    # (secret_string_wo, used for the Kong token, is older than 6.0.)
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.8"
    }
    # Only used when create_channel = true: hashicorp/aws has no CloudTrail
    # channel resource, Cloud Control (awscc) does.
    awscc = {
      source  = "hashicorp/awscc"
      version = "~> 1.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
