# libamaas_exports.cmake - fails unless libamaas.so exports only amaas_*.
#
# libamaas is built with hidden visibility and amaas.h marks its API with
# AMAAS_EXPORT; the util and proto code compiled into it must stay hidden.
# Run as: cmake -DNM=nm -DLIBRARY=path/to/libamaas.so -P libamaas_exports.cmake
if(NOT NM OR NOT LIBRARY)
  message(FATAL_ERROR "usage: cmake -DNM=nm -DLIBRARY=libamaas.so -P libamaas_exports.cmake")
endif()
execute_process(COMMAND ${NM} -D --defined-only ${LIBRARY}
                OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIBRARY}")
endif()
string(REPLACE "\n" ";" lines "${symbols}")
set(api 0)
set(others "")
foreach(line IN LISTS lines)
  # "ADDRESS TYPE NAME": the name is the last field
  if(line MATCHES "([^ ]+)$")
    set(name ${CMAKE_MATCH_1})
    if(name MATCHES "^amaas_")
      math(EXPR api "${api} + 1")
    else()
      list(APPEND others ${name})
    endif()
  endif()
endforeach()
if(others)
  list(JOIN others " " others)
  message(FATAL_ERROR "libamaas.so exports more than amaas_*: ${others}")
endif()
if(api LESS 10)
  message(FATAL_ERROR "libamaas.so exports only ${api} amaas_* symbols: is the API hidden?")
endif()
message(STATUS "libamaas.so exports ${api} symbols, all amaas_*")
