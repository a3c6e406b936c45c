terraform {
  # 1.5: optional() defaults in object types, check blocks and import blocks are all available.
  required_version = ">= 1.5"

  required_providers {
    # 7.x included: its upgrade guide changes nothing this module sets (README.md).
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }

  # Tells the provider which module made a request (the terraform-google-modules convention).
  provider_meta "google" {
    module_name = "redrive/terraform/v0.1.0"
  }
}
