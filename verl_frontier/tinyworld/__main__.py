from .cli import world_app

if __name__ == "__main__":
    world_app(prog_name="python -m verl_frontier.tinyworld")
