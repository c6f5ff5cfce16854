# This directory is meant to be applied as a root module with one tfvars file.
# To call it as a child module instead, delete this file and pass the providers
# from your own root module.

provider "aws" {
  # null = take the region from AWS_REGION / the shared config, as usual.
  region = var.aws_region

  default_tags {
    tags = var.tags
  }
}

provider "awscc" {
  region = var.aws_region
}
