"""Real local stand-ins for the outside world, shared by the tests and the offline demo.

- `http_server.MisbehavingHTTPServer`: "the web", a folder served on 127.0.0.1 with per-path faults.
- `s3_server.SeaweedS3Server`: a real S3-compatible server (SeaweedFS) on 127.0.0.1.
- `ray_cluster.LocalRayCluster`: `ray start --head` on loopback, for `ray job submit`.
Nothing here is a mock: clients talk to them over real sockets, as they would in production.
"""
