# Least privilege: exactly the permissions of the API calls redrive makes, each on the narrowest
# resource. tests/test_terraform.py scans the source for those calls and checks this file.

locals {
  # GetTask, ListTasks, RunTask on target queues, and GetQueue for a sweep's plan (a re-create
  # queue's dispatch rate bounds its ETA); FULL view needs one more permission; then what the
  # enabled features need there, each permission once.
  task_runner_permissions = distinct(concat(
    ["cloudtasks.tasks.get", "cloudtasks.tasks.list", "cloudtasks.tasks.run", "cloudtasks.queues.get"],
    var.settings.response_view == "FULL" ? ["cloudtasks.tasks.fullView"] : [],
    local.feature_target_permissions,
  ))

  # The redrive queue: CreateTask (a job per failure), GetTask with the FULL view (run_job
  # believes a job only as the queue holds it, body included) and GetQueue (a queued sweep's plan:
  # the queue's rate and the jobs already waiting bound its ETA). Nothing else, on that queue only.
  job_enqueuer_permissions = ["cloudtasks.tasks.create", "cloudtasks.tasks.get", "cloudtasks.tasks.fullView", "cloudtasks.queues.get"]

  # The revision fix check: GetService, ListServices and GetRevision (redrive.adapters.cloudrun),
  # in the projects whose services the target queues feed: the target queues' projects and those
  # named in service_map. roles/run.viewer would add every other Cloud Run read, IAM policies
  # included.
  run_viewer_permissions = ["run.services.get", "run.services.list", "run.revisions.get"]
  run_viewer_projects = var.settings.fix_check == "revision" ? toset(concat(
    [for q in local.target_queues : q.project],
    [for service in keys(var.service_map) : split("/", service)[1]],
  )) : toset([])

  # Per-feature grants. A feature that acts on the target queues adds its permissions to
  # feature_target_permissions; one that needs a queue of its own adds it to local.feature_queues
  # in queue.tf with its permissions there. Both are granted per queue, through custom roles, and
  # tests/test_terraform.py ties them to the calls in the source.
  #
  # Re-create (var.recreate): the copy is created in the original's queue, the original is read
  # with its body (FULL view) and deleted.
  recreate_target_permissions = var.recreate.enabled ? [
    "cloudtasks.tasks.create", "cloudtasks.tasks.delete", "cloudtasks.tasks.fullView",
  ] : []

  # Parking (var.parking), on the target queues: the queue's RetryConfig (GetQueue) decides
  # whether the next attempt is the last; the patrol lists the queue; parking reads the original
  # with its body (GetTask, FULL view) and deletes it once its parked copy exists; restoring
  # looks for the original and for its own restored task (GetTask) and creates the task again
  # in its origin queue (CreateTask). No ListQueues: target_queues holds full queue names only,
  # so the patrol never lists a location's queues.
  parking_target_permissions = var.parking.enabled ? [
    "cloudtasks.queues.get",
    "cloudtasks.tasks.get", "cloudtasks.tasks.list", "cloudtasks.tasks.fullView",
    "cloudtasks.tasks.create", "cloudtasks.tasks.delete",
  ] : []

  # Parking, on the parking queue: the parked copy created (CreateTask), looked for and read with
  # its body (GetTask, FULL view), listed by the patrol's census and by restores (ListTasks),
  # deleted once restored or withdrawn (DeleteTask), and the queue's own state and retention read
  # by the census (GetQueue).
  parking_queue_permissions = [
    "cloudtasks.queues.get",
    "cloudtasks.tasks.create", "cloudtasks.tasks.get", "cloudtasks.tasks.fullView",
    "cloudtasks.tasks.list", "cloudtasks.tasks.delete",
  ]

  feature_target_permissions = concat(local.recreate_target_permissions, local.parking_target_permissions)

  # Creating a task that carries an OIDC/OAuth token of a service account needs actAs on that
  # account: re-create's copies and parking's restored tasks carry the original's token.
  task_service_accounts = toset(concat(
    var.recreate.enabled ? var.recreate.task_service_accounts : [],
    var.parking.enabled ? var.parking.task_service_accounts : [],
  ))
}

# Each account the target queues' tasks carry a token of (task_service_accounts), once.
resource "google_service_account_iam_member" "runtime_acts_as_task_accounts" {
  for_each           = local.task_service_accounts
  service_account_id = "projects/-/serviceAccounts/${each.key}" # "-": the account's own project
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

# No predefined role is as narrow as get + list + run (taskRunner lacks get/list and adds
# fullView; viewer adds queue reads), so one custom role per project that holds target queues.
resource "google_project_iam_custom_role" "task_runner" {
  for_each    = local.target_projects
  project     = each.key
  role_id     = "${local.role_prefix}_taskRunner"
  title       = "redrive task runner"
  description = "Read and force-run the tasks of the queues redrive may re-drive (granted per queue)."
  permissions = local.task_runner_permissions
}

resource "google_cloud_tasks_queue_iam_member" "task_runner" {
  for_each = local.target_queues
  project  = each.value.project
  location = each.value.location
  name     = each.value.queue
  role     = google_project_iam_custom_role.task_runner[each.value.project].name
  member   = local.runtime_member
}

resource "google_project_iam_custom_role" "job_enqueuer" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_jobEnqueuer"
  title       = "redrive job enqueuer"
  description = "Create redrive jobs in the redrive queue (granted on that queue only)."
  permissions = local.job_enqueuer_permissions
}

resource "google_cloud_tasks_queue_iam_member" "job_enqueuer" {
  project  = var.project_id
  location = google_cloud_tasks_queue.main.location
  name     = google_cloud_tasks_queue.main.name
  role     = google_project_iam_custom_role.job_enqueuer.name
  member   = local.runtime_member
}

# Queues of features (local.feature_queues: claims, and parking when enabled): one custom role
# per feature with exactly its permissions, granted on its queue only.
resource "google_project_iam_custom_role" "feature_queue" {
  for_each    = local.feature_queues
  project     = var.project_id
  role_id     = "${local.role_prefix}_${each.key}Queue"
  title       = "redrive ${each.key} queue"
  description = "What redrive's ${each.key} feature does on its own queue (granted on that queue only)."
  permissions = each.value.permissions
}

resource "google_cloud_tasks_queue_iam_member" "feature_queue" {
  for_each = local.feature_queues
  project  = var.project_id
  location = google_cloud_tasks_queue.feature[each.key].location
  name     = google_cloud_tasks_queue.feature[each.key].name
  role     = google_project_iam_custom_role.feature_queue[each.key].name
  member   = local.runtime_member
}

# Creating a task with an OIDC token of the invoker account needs actAs on that account only.
resource "google_service_account_iam_member" "runtime_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

# run.invoker on run_job for the redrive queue's OIDC identity. The grant is additive: principals
# holding run.invoker (or editor/owner) on the project can call run_job too, so keep such
# project-level grants rare; run_job itself accepts only the jobs of REDRIVE_ALLOWED_QUEUES.
# A gen2 function's Cloud Run service has the function's name.
resource "google_cloud_run_v2_service_iam_member" "job_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.job.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# The Pub/Sub trigger (and the deploy push subscription) deliver as the runtime account.
resource "google_cloud_run_v2_service_iam_member" "signal_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main.name
  role     = "roles/run.invoker"
  member   = local.runtime_member
}

# Read-only Cloud Run access for the revision fix check: a custom role with exactly the three
# calls, granted in each project whose services the check reads (services.list is project-wide).
resource "google_project_iam_custom_role" "run_viewer" {
  for_each    = local.run_viewer_projects
  project     = each.key
  role_id     = "${local.role_prefix}_runViewer"
  title       = "redrive Cloud Run reader"
  description = "Read Cloud Run services and revisions for redrive's revision fix check."
  permissions = local.run_viewer_permissions
}

resource "google_project_iam_member" "run_viewer" {
  for_each = local.run_viewer_projects
  project  = each.key
  role     = google_project_iam_custom_role.run_viewer[each.key].name
  member   = local.runtime_member
}

# ---------------------------------------------------------------------------------------------
# The build account: build logs, the source archive, the function image. Nothing else.

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

resource "google_artifact_registry_repository_iam_member" "build_image_writer" {
  project    = local.repository_parts.project
  location   = local.repository_parts.location
  repository = local.repository_parts.name
  role       = "roles/artifactregistry.writer"
  member     = local.build_member

  # After the repository exists (its parts are known before it is created).
  depends_on = [google_artifact_registry_repository.functions]
}

# ---------------------------------------------------------------------------------------------
# Service agents. Eventarc's agent must hold its role before the trigger is created (a fresh
# project's agent may not have it in time: "Permission denied while using the Eventarc Service
# Agent"). The Pub/Sub agent mints the OIDC tokens of the trigger and the push subscriptions as
# the runtime account; projects that enabled Pub/Sub before 2021-04-08 must grant it that, on the
# runtime account only.

resource "google_project_iam_member" "eventarc_agent" {
  # checkov:skip=CKV_GCP_49:The Eventarc service agent's own role, which Google grants it itself on newer projects; the agent needs it to mint the trigger's tokens.
  count   = var.service_agents.eventarc ? 1 : 0
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.agents.eventarc
}

resource "google_service_account_iam_member" "pubsub_token_creator" {
  count              = var.service_agents.pubsub_token_creator ? 1 : 0
  service_account_id = google_service_account.main.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.agents.pubsub
}

# CMEK: every service agent that encrypts with the key needs it before its resource is created.
data "google_storage_project_service_account" "main" {
  project = var.project_id
}

locals {
  kms_agents = var.kms_key_name != null && var.kms_service_agent_grants ? {
    pubsub           = local.agents.pubsub
    storage          = data.google_storage_project_service_account.main.member
    artifactregistry = local.agents.artifactregistry
    cloudfunctions   = local.agents.cloudfunctions
    cloudrun         = local.agents.cloudrun
    eventarc         = local.agents.eventarc
  } : {}
}

resource "google_kms_crypto_key_iam_member" "agents" {
  for_each      = local.kms_agents
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}

# IAM changes take a while to be seen everywhere: the functions (and through them the trigger,
# the deploy subscription and the log sink) are created only after every grant they rely on, plus
# a wait. The code retries PERMISSION_DENIED during the first minutes after a deploy too.
resource "time_sleep" "grants" {
  create_duration = "${var.service_agents.propagation_wait_s}s"

  depends_on = [
    google_cloud_tasks_queue_iam_member.task_runner,
    google_cloud_tasks_queue_iam_member.job_enqueuer,
    google_cloud_tasks_queue_iam_member.feature_queue,
    google_service_account_iam_member.runtime_acts_as_invoker,
    google_service_account_iam_member.runtime_acts_as_task_accounts,
    google_service_account_iam_member.pubsub_token_creator,
    google_project_iam_member.run_viewer,
    google_project_iam_member.build_log_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_artifact_registry_repository_iam_member.build_image_writer,
    google_project_iam_member.eventarc_agent,
    google_kms_crypto_key_iam_member.agents,
  ]
}
