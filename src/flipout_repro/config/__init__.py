"""Run configuration: the schema, its checks, composition, identity and the resolvers."""
