//! `neurobatch queue delete-topology --yes`: deletes every queue and exchange
//! of the configuration's `queue.prefix` on its broker — `<prefix>.jobs`, the
//! retry queues of `queue.retry_initial_secs`/`retry_max_secs`, `.dead`, and
//! the exchanges, `.review` included. For a retired pipeline prefix, or what a
//! test campaign leaves behind (RabbitMQ's own CLI deletes queues but not
//! exchanges). Jobs still queued under the prefix are lost, hence `--yes`.

use neurobatch_core::queue::Queue;

use super::ConfigArgs;
use super::daemon;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Delete every queue and exchange of `queue.prefix`, with the messages in them.
    DeleteTopology {
        /// Confirms that the queued messages of the prefix may be lost.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: &Command) -> anyhow::Result<()> {
    let Command::DeleteTopology { yes, config } = cmd;
    let config = config.load()?;
    let prefix = config.queue.prefix.clone();
    anyhow::ensure!(*yes, "deleting the queues of `{prefix}` loses the jobs in them: add --yes");
    daemon::runtime()?.block_on(async {
        let options = config.queue.options(&config.worker, &format!("{prefix}:teardown"));
        let queue = Queue::connect(config.queue.url.expose(), options).await?;
        let deleted = queue.delete_topology().await;
        let closed = queue.close().await;
        deleted?;
        closed?;
        println!("deleted the queues and exchanges of `{prefix}`");
        Ok(())
    })
}
