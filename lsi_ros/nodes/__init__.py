"""ROS 2 nodes: one module per executable, each a thin wrapper over the core library.

Every module here that defines ``main()`` becomes an executable of the package of the same name
(CMakeLists.txt installs lib/lsi_ros/<name>; setup.py makes a console script).
"""
