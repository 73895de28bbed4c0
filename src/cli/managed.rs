//! `agent-bridge agent spawn|execute|stop|list` (managed CLI agents) and `agent-bridge code run`
//! (the code sandbox): each builds the params of one call of the table (`agent.spawn`,
//! `agent.execute`, `agent.stop`, `agent.managed`, `code.run`) and prints its result.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::common::{print_value, read_payload, run_async, ClientArgs, Failure};
use super::send::connect;

/// Flags of `agent-bridge agent`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    agent-bridge agent spawn --client-id ops coder --template claude --cwd /srv/repo\n  \
    agent-bridge agent execute --client-id me coder 'Summarise README.md'\n  \
    agent-bridge agent list --client-id ops\n  \
    agent-bridge agent stop --client-id ops coder")]
pub struct AgentArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// What `agent-bridge agent` does.
#[derive(Debug, Clone, Subcommand)]
pub enum AgentCommand {
    /// Start a managed agent from a configured command template (needs admin).
    Spawn {
        name: String,
        /// A template of the broker's `agent_templates` (default: its default template).
        #[arg(long)]
        template: Option<String>,
        /// The working directory of its processes.
        #[arg(long)]
        cwd: Option<String>,
        /// An environment variable for its processes, NAME=VALUE (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// A prompt's timeout in seconds.
        #[arg(long)]
        timeout_s: Option<f64>,
    },
    /// Run a prompt through a managed agent and print its result.
    Execute {
        name: String,
        /// The prompt, `@FILE`, or `-` for stdin.
        prompt: String,
    },
    /// Stop a managed agent (needs admin).
    Stop { name: String },
    /// List the managed agents.
    List,
}

/// Flags of `agent-bridge code`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    agent-bridge code run --client-id me --language python 'print(6 * 7)'\n  \
    agent-bridge code run --client-id me --language bash --timeout-s 5 @script.sh")]
pub struct CodeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: CodeCommand,
}

/// What `agent-bridge code` does.
#[derive(Debug, Clone, Subcommand)]
pub enum CodeCommand {
    /// Run code in the broker's sandbox (the broker must run with --sandbox).
    Run {
        /// python, javascript or bash.
        #[arg(long)]
        language: String,
        /// The code, `@FILE`, or `-` for stdin.
        code: String,
        /// Wall-clock limit in seconds.
        #[arg(long)]
        timeout_s: Option<f64>,
        /// Text given on the program's stdin.
        #[arg(long)]
        stdin: Option<String>,
    },
}

/// A prompt or program: the text itself, `@FILE` or `-` (stdin), as text.
fn text_arg(arg: &str) -> Result<String, Failure> {
    if arg == "-" || arg.starts_with('@') {
        return match read_payload(Some(arg))? {
            Value::String(s) => Ok(s),
            other => Ok(other.to_string()),
        };
    }
    Ok(arg.to_owned())
}

/// Makes `method` with `params` and prints the result.
async fn make(client: &ClientArgs, method: &str, params: Value) -> Result<(), Failure> {
    let who = client.resolve_bound("cli").await?;
    let conn = connect(&who).await?;
    let outcome = conn.call(method, params).await;
    conn.close().await;
    let result = outcome.map_err(|e| Failure::client(&e, &who.url, method))?;
    print_value(&result, who.json)
}

/// Runs `agent-bridge agent ...`.
pub fn agent(args: &AgentArgs) -> ExitCode {
    run_async(async move {
        let (method, params) = match &args.command {
            AgentCommand::Spawn { name, template, cwd, env, timeout_s } => {
                let mut vars = BTreeMap::new();
                for pair in env {
                    let (k, v) = pair.split_once('=').ok_or_else(|| Failure::usage(format!("--env {pair:?}: use NAME=VALUE")))?;
                    vars.insert(k.to_owned(), v.to_owned());
                }
                ("agent.spawn", json!({"name": name, "template": template, "cwd": cwd, "env": vars, "timeout_s": timeout_s}))
            }
            AgentCommand::Execute { name, prompt } => ("agent.execute", json!({"name": name, "prompt": text_arg(prompt)?})),
            AgentCommand::Stop { name } => ("agent.stop", json!({"name": name})),
            AgentCommand::List => ("agent.managed", json!({})),
        };
        make(&args.client, method, params).await
    })
}

/// Runs `agent-bridge code ...`.
pub fn code(args: &CodeArgs) -> ExitCode {
    run_async(async move {
        let CodeCommand::Run { language, code, timeout_s, stdin } = &args.command;
        let params = json!({"language": language, "code": text_arg(code)?, "timeout_s": timeout_s, "stdin": stdin});
        make(&args.client, "code.run", params).await
    })
}
