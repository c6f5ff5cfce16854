# Where the state lives. Without a backend it is terraform.tfstate in this directory, in plain
# text, on the machine that applied, and it holds the dedup store's AUTH token (see "Secrets and
# the Terraform state" in README.md). Keep it in S3 instead: uncomment, fill in, `terraform init`
# (`-migrate-state` once, to move a local state there).
#
# terraform {
#   backend "s3" {
#     bucket       = "my-org-terraform-state"              # versioned, public access blocked
#     key          = "kong-audit-shipper/terraform.tfstate"
#     region       = "eu-west-1"
#     encrypt      = true
#     kms_key_id   = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
#     use_lockfile = true # S3's own lock file (Terraform >= 1.11): no DynamoDB table
#   }
# }
