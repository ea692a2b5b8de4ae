"""Built-in plugins: ordinary ``@hookimpl`` modules, registered exactly like installed ones."""
