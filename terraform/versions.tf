terraform {
  # 1.6: `terraform test`, `removed`/`import` blocks and preconditions on every
  # resource are all available; nothing newer is used on purpose.
  required_version = ">= 1.6.0"

  required_providers {
    # Major 6. At least 6.8: older 6.x releases cap the SQS max_message_size
    # at 256 KiB, and the dead-letter queue takes whole entries up to 1 MiB.
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
