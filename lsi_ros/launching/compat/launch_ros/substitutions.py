"""FindPackageShare through the ament index, as in launch_ros."""

from ament_index_python.packages import get_package_share_directory
from launch.substitutions import Substitution, perform_substitutions


class FindPackageShare(Substitution):
    def __init__(self, package):
        self.package = package

    def perform(self, context) -> str:
        return get_package_share_directory(perform_substitutions(context, self.package))
