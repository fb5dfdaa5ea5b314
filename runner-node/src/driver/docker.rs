//! The Docker driver on bollard (docs/fn-compatibility.md, "Agent").

use std::collections::HashMap;

use async_trait::async_trait;
use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Network, NetworkCreateRequest, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, InspectNetworkOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use shared::{normalize_registry, ImageRef};

use super::{Attached, ContainerSpec, Driver, ExitStatus, Output};
use crate::config::RegistryAuth;
use crate::error::AgentError;

/// Runs containers on the local Docker engine (`DOCKER_HOST` or the default socket).
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
    /// `FN_DOCKER_AUTH`/`DOCKER_AUTH` JSON, if given; else `~/.docker/config.json` is read per pull.
    auth: Option<RegistryAuth>,
}

impl DockerDriver {
    /// Connects with the local defaults and negotiates the API version (the engine may be
    /// older than bollard's default version).
    pub async fn connect(auth: Option<RegistryAuth>) -> Result<Self, AgentError> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;
        Ok(DockerDriver { docker, auth })
    }

    /// The underlying bollard client, for helpers (image builds in tests).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Credentials for the registry that hosts `image`, from the configured JSON or the Docker
    /// config file.
    fn credentials(&self, image: &ImageRef) -> Option<DockerCredentials> {
        match &self.auth {
            Some(a) => credentials_for(a.expose(), &image.registry),
            None => {
                let home = std::env::var("HOME").ok()?;
                let json = std::fs::read_to_string(format!("{home}/.docker/config.json")).ok()?;
                credentials_for(&json, &image.registry)
            }
        }
    }
}

/// The entry of a Docker credentials JSON (`{"auths":{host:{"auth":base64(user:pass)}}}`, or the
/// bare map) for exactly `registry` (`host[:port]`, Docker Hub's aliases counted as one). Fn matched
/// by host suffix, which sent a registry's credentials to any look-alike host that ends the same way.
pub fn credentials_for(json: &str, registry: &str) -> Option<DockerCredentials> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let auths = v.get("auths").unwrap_or(&v).as_object()?;
    let wanted = normalize_registry(registry);
    let (host, entry) = auths.iter().find(|(host, _)| normalize_registry(host) == wanted)?;
    let auth = entry.get("auth").and_then(|a| a.as_str())?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(pass.to_string()),
        serveraddress: Some(host.clone()),
        ..Default::default()
    })
}

/// Splits an image reference into (registry, repository, tag): a missing tag is `latest`, the
/// first path part is a registry only if it has `.` or `:` or is `localhost`. `None` if the
/// reference is not valid.
pub fn parse_image(image: &str) -> Option<(String, String, String)> {
    let r = ImageRef::parse(image)?;
    let tag = r.tag.unwrap_or_else(|| "latest".to_string());
    Some((r.registry, r.repository, tag))
}

/// Docker's bridge option that, set to `false`, drops traffic between the bridge's containers.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// Docker's bridge option naming the host interface.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// Longest Linux interface name.
const MAX_IFNAME: usize = 15;

/// An existing network is used for functions only if it is a bridge with inter-container traffic off.
fn check_isolated(name: &str, net: &Network) -> Result<(), AgentError> {
    let bridge = net.driver.as_deref() == Some("bridge");
    let icc_off = net.options.as_ref().and_then(|o| o.get(ICC_OPTION)).is_some_and(|v| v == "false");
    if bridge && icc_off {
        Ok(())
    } else {
        Err(AgentError::Internal(format!(
            "network {name} exists but is not a bridge with {ICC_OPTION}=false, so function containers \
             could reach each other on it; remove it, or name the networks to use in FN_DOCKER_NETWORKS"
        )))
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code: 404, .. })
}

#[async_trait]
impl Driver for DockerDriver {
    async fn ensure_image(&self, image: &str) -> Result<(), AgentError> {
        // Only a valid reference reaches Docker: anything else could be read as another image,
        // another registry or an option.
        let reference = ImageRef::parse(image).ok_or_else(|| AgentError::InvalidImage(image.to_string()))?;
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // Docker pulls `name` at `tag`, where a digest stands in for the tag.
        let tag = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let opts = CreateImageOptions { from_image: Some(reference.name(image)), tag: Some(tag), ..Default::default() };
        // The caller learns only that the pull failed; Docker's detail (registry answers,
        // auth errors) stays in the node's log.
        let pull_err = |status: u16, detail: &dyn std::fmt::Display| {
            tracing::warn!(image, status, error = %detail, "image pull failed");
            AgentError::ImagePull { image: image.to_string(), status }
        };
        let mut stream = self.docker.create_image(Some(opts), None, self.credentials(&reference));
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => {}
                Err(BollardError::DockerResponseServerError { status_code, message }) => {
                    let status = if matches!(status_code, 401 | 404) { status_code } else { 500 };
                    return Err(pull_err(status, &message));
                }
                Err(e) => return Err(pull_err(500, &e)),
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
            security_opt: spec.drop_privileges.then(|| vec!["no-new-privileges".to_string()]),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(n, v)| ResourcesUlimits { name: Some(n.clone()), soft: Some(*v), hard: Some(*v) })
                    .collect()
            }),
            network_mode: spec.network_mode.clone(),
            storage_opt: (spec.fs_size_mb > 0)
                .then(|| HashMap::from([("size".to_string(), format!("{}M", spec.fs_size_mb))])),
            log_config: Some(HostConfigLogConfig { typ: Some("none".to_string()), config: None }),
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
        let opts = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created = self.docker.create_container(Some(opts), body).await?;
        Ok(created.id)
    }

    async fn attach(&self, id: &str, stdin: bool) -> Result<Attached, AgentError> {
        let opts = AttachContainerOptions { stream: true, stdin, stdout: true, stderr: true, ..Default::default() };
        let res = self.docker.attach_container(id, Some(opts)).await?;
        let output = res
            .output
            .map_err(AgentError::from)
            .try_filter_map(|o| async move {
                Ok(match o {
                    bollard::container::LogOutput::StdOut { message } => Some(Output::Stdout(message)),
                    bollard::container::LogOutput::StdErr { message } => Some(Output::Stderr(message)),
                    bollard::container::LogOutput::Console { message } => Some(Output::Stdout(message)),
                    bollard::container::LogOutput::StdIn { .. } => None,
                })
            })
            .boxed();
        Ok(Attached { stdin: res.input, output })
    }

    async fn start(&self, id: &str) -> Result<(), AgentError> {
        self.docker.start_container(id, None::<StartContainerOptions>).await?;
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, AgentError> {
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        let code = match stream.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(AgentError::Docker(format!("wait for {id} ended without a status"))),
        };
        let oom_killed =
            match self.docker.inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>).await {
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
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed by someone else (e.g. a concurrent reap).
            Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_isolated_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<(), AgentError> {
        match self.docker.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(net) => return check_isolated(name, &net),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut options = HashMap::from([(ICC_OPTION.to_string(), "false".to_string())]);
        // A fixed interface name lets firewall rules name the functions' bridge.
        if name.len() <= MAX_IFNAME {
            options.insert(BRIDGE_NAME_OPTION.to_string(), name.to_string());
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            options: Some(options),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {
                tracing::info!(network = name, "created the isolated network for function containers");
                Ok(())
            }
            // Another node on this host created it meanwhile: check theirs.
            Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => {
                let net = self.docker.inspect_network(name, None::<InspectNetworkOptions>).await?;
                check_isolated(name, &net)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, AgentError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{credentials_for, parse_image};
    use base64::Engine;

    #[test]
    fn image_references_are_parsed_like_fn() {
        let p = |i: &str| parse_image(i).unwrap();
        assert_eq!(p("hello"), ("docker.io".into(), "hello".into(), "latest".into()));
        assert_eq!(p("me/fn:0.1"), ("docker.io".into(), "me/fn".into(), "0.1".into()));
        assert_eq!(p("localhost:5000/fn"), ("localhost:5000".into(), "fn".into(), "latest".into()));
        assert_eq!(p("reg.io/a/b:v2"), ("reg.io".into(), "a/b".into(), "v2".into()));
        assert_eq!(parse_image("Bad Image"), None);
    }

    fn auths(hosts: &[&str]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode("user:secret");
        let entries: Vec<String> = hosts.iter().map(|h| format!(r#""{h}":{{"auth":"{b64}"}}"#)).collect();
        format!(r#"{{"auths":{{{}}}}}"#, entries.join(","))
    }

    #[test]
    fn credentials_go_only_to_the_exact_registry_they_name() {
        let json = auths(&["registry.example.com"]);
        let c = credentials_for(&json, "registry.example.com").expect("exact host");
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("secret"));
        assert_eq!(c.serveraddress.as_deref(), Some("registry.example.com"));
        for other in [
            "evil-registry.example.com",
            "registry.example.com.evil.net",
            "evilregistry.example.com",
            "registry.example.com:5000",
            "example.com",
            "docker.io",
        ] {
            assert!(credentials_for(&json, other).is_none(), "{other}");
        }
        // A port is part of the host: credentials for :5000 are not for :5001 or the bare host.
        let json = auths(&["https://registry.example.com:5000/v2/"]);
        assert!(credentials_for(&json, "registry.example.com:5000").is_some());
        assert!(credentials_for(&json, "registry.example.com:5001").is_none());
        assert!(credentials_for(&json, "registry.example.com").is_none());
    }

    #[test]
    fn docker_hub_aliases_share_credentials_and_nothing_else_does() {
        let json = auths(&["https://index.docker.io/v1/"]);
        assert!(credentials_for(&json, "docker.io").is_some());
        assert!(credentials_for(&json, "registry-1.docker.io").is_some());
        assert!(credentials_for(&json, "evildocker.io").is_none());
        assert!(credentials_for(&json, "docker.io.evil.net").is_none());
        let json = auths(&["evildocker.io"]);
        assert!(credentials_for(&json, "docker.io").is_none(), "a look-alike of the hub");
    }
}
