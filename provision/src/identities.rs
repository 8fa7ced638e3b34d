//! One IAM user per local service, with the template's policies for that service (as moto
//! must see them, [`PolicyDocument::for_moto`]) and an access key, so that once the emulator
//! enforces IAM each service runs with exactly its own permissions. An admin user is the
//! operator's (the tests' own client, the demo's uploader).

use aws_sdk_iam::error::DisplayErrorContext;
use serde::Serialize;

use crate::iam_from_template::{NamedPolicy, ServicePolicies};
use crate::policy::PolicyDocument;

/// An IAM call failed.
#[derive(Debug, thiserror::Error)]
#[error("IAM {operation} for user `{user}`: {message}")]
pub struct IdentityError {
    /// The IAM operation, e.g. `CreateAccessKey`.
    pub operation: &'static str,
    /// The user it was for.
    pub user: String,
    /// The service's message.
    pub message: String,
}

/// An access key of one local identity.
#[derive(Clone, Serialize, PartialEq, Eq)]
pub struct AccessKey {
    /// The IAM user the key belongs to.
    pub user: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for AccessKey {
    // Never print a secret into a log or a test failure.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("user", &self.user)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The keys of every local identity.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceIdentities {
    /// Everything allowed: the operator's, for uploads and inspection.
    pub admin: AccessKey,
    /// The dispatcher task role's policies.
    pub dispatcher: AccessKey,
    /// The worker task role's policies.
    pub worker: AccessKey,
    /// The MediaConvert role's policies and the EventBridge queue grants.
    pub mediaconvert_standin: AccessKey,
}

/// The admin's policy: every action on every resource.
pub fn admin_policy() -> PolicyDocument {
    PolicyDocument {
        statements: vec![crate::policy::Statement {
            sid: Some("Operator".into()),
            effect: crate::policy::Effect::Allow,
            actions: vec!["*".into()],
            resources: vec!["*".into()],
            condition: None,
        }],
    }
}

/// Creates `<prefix>-admin`, `<prefix>-dispatcher`, `<prefix>-worker` and
/// `<prefix>-mediaconvert-standin` with their policies and one key each. Call it while the
/// emulator does not enforce IAM yet.
pub async fn create_service_identities(
    iam: &aws_sdk_iam::Client,
    prefix: &str,
    policies: &ServicePolicies,
) -> Result<ServiceIdentities, IdentityError> {
    let admin = vec![NamedPolicy {
        name: "operator".into(),
        document: admin_policy(),
    }];
    Ok(ServiceIdentities {
        admin: create_identity(iam, &format!("{prefix}-admin"), &admin).await?,
        dispatcher: create_identity(iam, &format!("{prefix}-dispatcher"), &policies.dispatcher)
            .await?,
        worker: create_identity(iam, &format!("{prefix}-worker"), &policies.worker).await?,
        mediaconvert_standin: create_identity(
            iam,
            &format!("{prefix}-mediaconvert-standin"),
            &policies.mediaconvert_standin,
        )
        .await?,
    })
}

/// Creates `user` (or takes the existing one) with `policies` inline (in their moto form) and
/// returns a new access key, the user's only one.
pub async fn create_identity(
    iam: &aws_sdk_iam::Client,
    user: &str,
    policies: &[NamedPolicy],
) -> Result<AccessKey, IdentityError> {
    let fail = |operation: &'static str, message: String| IdentityError {
        operation,
        user: user.to_string(),
        message,
    };
    match iam.create_user().user_name(user).send().await {
        Ok(_) => {}
        // A second run: keep the user, replace its policies below, and its keys here (IAM
        // allows two per user), so running the provisioner again changes nothing else.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_entity_already_exists_exception()) =>
        {
            let keys = iam
                .list_access_keys()
                .user_name(user)
                .send()
                .await
                .map_err(|e| fail("ListAccessKeys", DisplayErrorContext(&e).to_string()))?;
            for key in keys.access_key_metadata() {
                if let Some(id) = key.access_key_id() {
                    iam.delete_access_key()
                        .user_name(user)
                        .access_key_id(id)
                        .send()
                        .await
                        .map_err(|e| {
                            fail("DeleteAccessKey", DisplayErrorContext(&e).to_string())
                        })?;
                }
            }
        }
        Err(e) => return Err(fail("CreateUser", DisplayErrorContext(&e).to_string())),
    }
    for policy in policies {
        iam.put_user_policy()
            .user_name(user)
            .policy_name(&policy.name)
            .policy_document(policy.document.for_moto().to_json().to_string())
            .send()
            .await
            .map_err(|e| fail("PutUserPolicy", DisplayErrorContext(&e).to_string()))?;
    }
    let out = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .map_err(|e| fail("CreateAccessKey", DisplayErrorContext(&e).to_string()))?;
    let key = out
        .access_key()
        .ok_or_else(|| fail("CreateAccessKey", "the response has no key".into()))?;
    Ok(AccessKey {
        user: user.to_string(),
        access_key_id: key.access_key_id().to_string(),
        secret_access_key: key.secret_access_key().to_string(),
    })
}

/// Creating the local identities from the template failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalIamError {
    /// The template's policies could not be resolved.
    #[error(transparent)]
    Template(#[from] crate::iam_from_template::TemplateError),
    /// IAM refused a call.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Resolves the built-in template for `names` and creates every service's identity with its
/// policies: what `framefleet-provision --local-iam`, the tests and the demo run.
pub async fn identities_from_template(
    iam: &aws_sdk_iam::Client,
    names: crate::iam_from_template::LocalNames,
) -> Result<ServiceIdentities, LocalIamError> {
    let prefix = names.prefix.clone();
    let template =
        crate::iam_from_template::Template::parse(crate::iam_from_template::TEMPLATE, names)?;
    let policies = template.service_policies()?;
    Ok(create_service_identities(iam, &prefix, &policies).await?)
}
