//! The Docker driver on bollard (reference §4.4).

use std::collections::HashMap;

use async_trait::async_trait;
use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use super::{Attached, ContainerSpec, Driver, ExitStatus, Output};
use crate::error::AgentError;

/// Runs containers on the local Docker engine (`DOCKER_HOST` or the default socket).
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
    /// `FN_DOCKER_AUTH`/`DOCKER_AUTH` JSON, if given; else `~/.docker/config.json` is read per pull.
    auth: Option<String>,
}

impl DockerDriver {
    /// Connects with the local defaults and negotiates the API version (the engine may be
    /// older than bollard's default version).
    pub async fn connect(auth: Option<String>) -> Result<Self, AgentError> {
        let docker = Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        Ok(DockerDriver { docker, auth })
    }

    /// The underlying bollard client, for helpers (image builds in tests).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Credentials for the registry that hosts `image`, from the configured JSON or the Docker
    /// config file, matched by registry host suffix as Fn does.
    fn credentials(&self, image: &str) -> Option<DockerCredentials> {
        let (registry, _, _) = parse_image(image);
        let json = match &self.auth {
            Some(j) => j.clone(),
            None => {
                let home = std::env::var("HOME").ok()?;
                std::fs::read_to_string(format!("{home}/.docker/config.json")).ok()?
            }
        };
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        let auths = v.get("auths").unwrap_or(&v).as_object()?;
        for (host, entry) in auths {
            let host_only = host
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host_only = host_only.split('/').next().unwrap_or(host_only);
            if !(registry.ends_with(host_only)
                || (registry == "docker.io" && host_only.contains("docker.io")))
            {
                continue;
            }
            let auth = entry.get("auth").and_then(|a| a.as_str())?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, pass) = decoded.split_once(':')?;
            return Some(DockerCredentials {
                username: Some(user.to_string()),
                password: Some(pass.to_string()),
                serveraddress: Some(host.clone()),
                ..Default::default()
            });
        }
        None
    }
}

/// Splits an image reference into (registry, repository, tag): a missing tag is `latest`, the
/// first path part is a registry only if it has `.` or `:` or is `localhost`.
pub fn parse_image(image: &str) -> (String, String, String) {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    (registry, repo, tag.to_string())
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[async_trait]
impl Driver for DockerDriver {
    async fn ensure_image(&self, image: &str) -> Result<(), AgentError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let (_, _, tag) = parse_image(image);
        let from_image = image
            .strip_suffix(&format!(":{tag}"))
            .unwrap_or(image)
            .to_string();
        let opts = CreateImageOptions {
            from_image: Some(from_image),
            tag: Some(tag),
            ..Default::default()
        };
        let pull_err = |status: u16, message: String| AgentError::ImagePull {
            image: image.to_string(),
            status,
            message,
        };
        let mut stream = self
            .docker
            .create_image(Some(opts), None, self.credentials(image));
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => {}
                Err(BollardError::DockerResponseServerError {
                    status_code,
                    message,
                }) => {
                    let status = if matches!(status_code, 401 | 404) {
                        status_code
                    } else {
                        500
                    };
                    return Err(pull_err(status, message));
                }
                Err(e) => return Err(pull_err(500, e.to_string())),
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, AgentError> {
        let mut tmpfs = HashMap::new();
        if spec.tmpfs {
            let mut opts = Vec::new();
            if spec.tmpfs_mb > 0 {
                opts.push(format!("size={}m", spec.tmpfs_mb));
            }
            if spec.tmpfs_inodes > 0 {
                opts.push(format!("nr_inodes={}", spec.tmpfs_inodes));
            }
            tmpfs.insert("/tmp".to_string(), opts.join(","));
        }
        let memory = spec.memory_bytes as i64;
        let host = HostConfig {
            memory: (memory > 0).then_some(memory),
            memory_swap: (memory > 0).then_some(memory),
            cpu_quota: (spec.cpu_mcpu > 0).then_some(spec.cpu_mcpu as i64 * 100),
            cpu_period: (spec.cpu_mcpu > 0).then_some(100_000),
            pids_limit: (spec.pids_limit > 0).then_some(spec.pids_limit),
            readonly_rootfs: Some(spec.read_only_rootfs),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            cap_drop: spec.drop_privileges.then(|| vec!["all".to_string()]),
            security_opt: spec
                .drop_privileges
                .then(|| vec!["no-new-privileges".to_string()]),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(n, v)| ResourcesUlimits {
                        name: Some(n.clone()),
                        soft: Some(*v),
                        hard: Some(*v),
                    })
                    .collect()
            }),
            network_mode: spec.network_mode.clone(),
            storage_opt: (spec.fs_size_mb > 0)
                .then(|| HashMap::from([("size".to_string(), format!("{}M", spec.fs_size_mb))])),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            user: spec.user.clone(),
            open_stdin: Some(spec.open_stdin),
            stdin_once: Some(spec.stdin_once),
            attach_stdin: Some(spec.open_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self.docker.create_container(Some(opts), body).await?;
        Ok(created.id)
    }

    async fn attach(&self, id: &str, stdin: bool) -> Result<Attached, AgentError> {
        let opts = AttachContainerOptions {
            stream: true,
            stdin,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let res = self.docker.attach_container(id, Some(opts)).await?;
        let output = res
            .output
            .map_err(AgentError::from)
            .try_filter_map(|o| async move {
                Ok(match o {
                    bollard::container::LogOutput::StdOut { message } => {
                        Some(Output::Stdout(message))
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        Some(Output::Stderr(message))
                    }
                    bollard::container::LogOutput::Console { message } => {
                        Some(Output::Stdout(message))
                    }
                    bollard::container::LogOutput::StdIn { .. } => None,
                })
            })
            .boxed();
        Ok(Attached {
            stdin: res.input,
            output,
        })
    }

    async fn start(&self, id: &str) -> Result<(), AgentError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await?;
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, AgentError> {
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        let code = match stream.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(AgentError::Docker(format!(
                    "wait for {id} ended without a status"
                )))
            }
        };
        let oom_killed = match self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        };
        Ok(ExitStatus { code, oom_killed })
    }

    async fn pause(&self, id: &str) -> Result<(), AgentError> {
        Ok(self.docker.pause_container(id).await?)
    }

    async fn unpause(&self, id: &str) -> Result<(), AgentError> {
        Ok(self.docker.unpause_container(id).await?)
    }

    async fn remove(&self, id: &str) -> Result<(), AgentError> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed by someone else (e.g. a concurrent reap).
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, AgentError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_image;

    #[test]
    fn image_references_are_parsed_like_fn() {
        assert_eq!(
            parse_image("hello"),
            ("docker.io".into(), "hello".into(), "latest".into())
        );
        assert_eq!(
            parse_image("me/fn:0.1"),
            ("docker.io".into(), "me/fn".into(), "0.1".into())
        );
        assert_eq!(
            parse_image("localhost:5000/fn"),
            ("localhost:5000".into(), "fn".into(), "latest".into())
        );
        assert_eq!(
            parse_image("reg.io/a/b:v2"),
            ("reg.io".into(), "a/b".into(), "v2".into())
        );
    }
}
