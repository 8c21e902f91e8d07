"""Launch description sources (Python files only)."""


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path):
        self.location = launch_file_path
