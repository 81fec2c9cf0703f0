# Unit test of the broker's Prometheus metrics (broker/metrics.c): the text
# rendered and the HTTP server on 127.0.0.1.  Included from
# tests/CMakeLists.txt; needs the target amaas_broker_services (with
# broker/metrics.c and PkgConfig::MHD) and Check.
if(NOT TARGET PkgConfig::CHECK)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(CHECK REQUIRED IMPORTED_TARGET check)
endif()
add_executable(test_metrics test_metrics.c)
target_link_libraries(test_metrics PRIVATE amaas_broker_services PkgConfig::CHECK)
add_test(NAME unit_metrics COMMAND test_metrics)
set_tests_properties(unit_metrics PROPERTIES TIMEOUT 60)
