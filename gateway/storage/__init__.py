"""SQL storage: schema, engine set-up, migrations, the group-commit writer, queries."""
