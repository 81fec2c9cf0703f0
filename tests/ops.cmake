# Operations tests: scripts/amaas-cluster (start, status, scale, stop, a
# rolling restart under load) and many machines proven with network
# namespaces (skipped unless root with iproute2).  Included from
# tests/CMakeLists.txt after DEBIAN_PYTHON is found and chaos_client is built.
if(NOT DEBIAN_PYTHON)
  find_program(DEBIAN_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
endif()
add_test(NAME integration_ops
         COMMAND ${DEBIAN_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_ops.py ${CMAKE_BINARY_DIR})
add_test(NAME integration_netns
         COMMAND ${DEBIAN_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_netns.py ${CMAKE_BINARY_DIR})
set_tests_properties(integration_ops integration_netns PROPERTIES TIMEOUT 300)
