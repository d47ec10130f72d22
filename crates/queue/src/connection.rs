//! Connections to one Redis server or to a Redis Cluster, behind one type.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection the queue sends its commands through. Both kinds multiplex requests and
/// reconnect by themselves; cloning shares the underlying connection.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Opens connections to wherever the queue lives.
#[derive(Clone)]
pub(crate) enum Connector {
    Single(Client),
    // Boxed: a cluster client is more than twice the size of a single-server one.
    Cluster(Box<ClusterClient>),
}

impl Connector {
    /// Opens a new connection whose replies may take up to `response_timeout`.
    pub(crate) async fn open(&self, response_timeout: Duration) -> RedisResult<Connection> {
        match self {
            Self::Single(client) => {
                let config =
                    ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Connection::Single)
            }
            Self::Cluster(client) => {
                let config = ClusterConfig::new().set_response_timeout(response_timeout);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Connection::Cluster)
            }
        }
    }
}
