//! [`Managed`]: the registry of managed CLI agents and the code sandbox. A permanent child of the
//! root (`managed`, not critical, own arbiter) and the group node its agents hang under:
//!
//! ```text
//! managed                 Managed registry: name → agent, code.run
//!   └─ managed:<name>     one ManagedAgent per agent.spawn (permanent, not critical)
//! ```
//!
//! It answers the `agent.spawn`, `agent.execute`, `agent.stop`, `agent.managed` and `code.run`
//! calls of the table of calls ([`ManagedCall`], from `RoomsHandle::call`). Spawning only picks a
//! template of the configuration (the command itself never comes from a client); `{prompt}`
//! becomes one argv element, never a shell word. `code.run` is [`sandbox::run`], a future of its
//! own (processes are awaited with tokio::process, never on the event loop).
//!
//! The registry keeps only the name → address map: after a restart it is empty (its agents are
//! stopped by then, see `restarting`).

pub mod agent;
pub mod process;
pub mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};
use tracing::info;

use self::agent::{Describe, Execute, ManagedAgent, Stop, Template};
use crate::messages::{ManagedCall, ManagedConfig, ManagedError, ManagedOp, RoomError, SandboxConfig};
use crate::supervisor::{supervisee, ChildHandle, ChildSpec, Mailbox, RestartPolicy, Tree};

/// One spawned agent.
struct Entry {
    addr: Addr<ManagedAgent>,
    child: ChildHandle,
}

/// The registry.
pub struct Managed {
    child: ChildHandle,
    tree: Arc<Tree>,
    config: Arc<ManagedConfig>,
    sandbox: Arc<SandboxConfig>,
    agents: BTreeMap<String, Entry>,
}

impl Managed {
    pub const NAME: &'static str = "managed";

    pub fn new(child: ChildHandle, tree: Arc<Tree>, config: ManagedConfig, sandbox: SandboxConfig) -> Self {
        Managed { child, tree, config: Arc::new(config), sandbox: Arc::new(sandbox), agents: BTreeMap::new() }
    }

    fn spawn(&mut self, name: String, template: Option<String>, cwd: Option<PathBuf>, env: BTreeMap<String, String>, timeout: Option<Duration>) -> Result<Value, RoomError> {
        if self.agents.contains_key(&name) {
            return Err(RoomError::AlreadyExists(format!("managed agent {name:?}")));
        }
        if self.agents.len() >= self.config.max_agents {
            return Err(RoomError::Limit(format!("at most {} managed agents", self.config.max_agents)));
        }
        let template_name = template.unwrap_or_else(|| self.config.default_template.clone());
        let argv = self.config.templates.get(&template_name).cloned().ok_or_else(|| ManagedError::UnknownTemplate(template_name.clone()))?;
        if let Some(dir) = &cwd {
            if !dir.is_dir() {
                return Err(RoomError::InvalidParams(format!("cwd {} is not a directory", dir.display())));
            }
        }
        let template = Template { name: template_name, argv, cwd, env: env.into_iter().collect(), timeout: timeout.unwrap_or(self.config.timeout) };
        let child = self.tree.register(ChildSpec {
            name: format!("managed:{name}"),
            kind: ManagedAgent::NAME,
            parent: Managed::NAME.into(),
            policy: RestartPolicy::Permanent,
            intensity: crate::supervisor::Intensity::default(),
            critical: false,
        });
        let agent = ManagedAgent::new(child.clone(), name.clone(), template, Arc::clone(&self.config));
        let addr = Mailbox::new().supervise(&child, agent);
        info!(actor = %child.name(), "managed agent spawned");
        self.agents.insert(name.clone(), Entry { addr, child });
        Ok(json!({ "name": name, "spawned": true }))
    }

    fn agent(&self, name: &str) -> Result<&Entry, RoomError> {
        self.agents.get(name).ok_or_else(|| ManagedError::UnknownAgent(name.to_owned()).into())
    }
}

impl Actor for Managed {
    type Context = Context<Self>;
}

impl Supervised for Managed {
    fn restarting(&mut self, _: &mut Context<Self>) {
        for (_, entry) in std::mem::take(&mut self.agents) {
            entry.addr.do_send(Stop);
            entry.child.stopped();
        }
    }
}

supervisee!(Managed, RoomError, child);

impl Handler<ManagedCall> for Managed {
    type Result = ResponseFuture<Result<Value, RoomError>>;

    fn handle(&mut self, msg: ManagedCall, ctx: &mut Context<Self>) -> Self::Result {
        use crate::supervisor::Supervisee as _;
        let ready = |r: Result<Value, RoomError>| -> Self::Result { Box::pin(async move { r }) };
        let caller = msg.caller;
        let outcome = self.guard(ctx, |m, _| match msg.op {
            ManagedOp::Spawn { name, template, cwd, env, timeout } => Ok(Err(m.spawn(name, template, cwd, env, timeout))),
            ManagedOp::Execute { name, prompt, progress } => {
                let req = m.agent(&name)?.addr.send(Execute { caller: caller.clone(), prompt, progress });
                Ok(Ok(Box::pin(async move { req.await? }) as Self::Result))
            }
            ManagedOp::Stop { name } => {
                let entry = m.agent(&name)?;
                let req = entry.addr.send(Stop);
                let entry = m.agents.remove(&name).expect("looked up");
                entry.child.stopped();
                Ok(Ok(Box::pin(async move {
                    req.await??;
                    Ok(json!({ "name": name, "stopped": true }))
                }) as Self::Result))
            }
            ManagedOp::List => {
                let reqs: Vec<_> = m.agents.values().map(|e| e.addr.send(Describe)).collect();
                Ok(Ok(Box::pin(async move {
                    let mut agents = Vec::new();
                    for r in reqs {
                        agents.push(r.await??);
                    }
                    Ok(json!({ "count": agents.len(), "agents": agents }))
                }) as Self::Result))
            }
            ManagedOp::Code(code) => {
                let sandbox = Arc::clone(&m.sandbox);
                Ok(Ok(Box::pin(async move { Ok(sandbox::run(&sandbox, code).await?) }) as Self::Result))
            }
        });
        match outcome {
            Ok(Ok(fut)) => fut,
            Ok(Err(answer)) => ready(answer),
            Err(e) => ready(Err(e)),
        }
    }
}
