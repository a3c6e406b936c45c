variable "project_id" {
  type        = string
  description = "The project to deploy the example into (its billing must be enabled)."
}

variable "region" {
  type        = string
  description = "The region of every regional resource of the example."
  default     = "europe-west1"
}

variable "dry_run" {
  type        = bool
  description = "Whether redrive only decides and logs, without calling RunTask; start with true and switch off once the outcomes look right."
  default     = true
}

variable "notification_email" {
  type        = string
  description = "The e-mail address redrive's alerts (outcomes that need a person, the pipeline alerts) are sent to."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+$", var.notification_email))
    error_message = "The notification_email must be an e-mail address."
  }
}
