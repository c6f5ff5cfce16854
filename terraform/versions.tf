terraform {
  # 1.6: `terraform test`, `removed`/`import` blocks and preconditions on every
  # resource are all available; nothing newer is used on purpose.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
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
