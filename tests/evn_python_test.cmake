# The examples' integration tests: a Python script under tests/<dir>/ that
# starts the real binaries (through tests/evnserver.py), registered once per
# event backend. Included by the tests/*/CMakeLists.txt that need it.
#
#   evn_python_test(NAME SCRIPT TIMEOUT SECONDS
#                   [NO_BACKENDS | BACKENDS b...] [SKIP_RETURN_CODE N]
#                   [LABELS l...] [ARGS a...])
#
# Exit status 77 (SKIP_RETURN_CODE, unless another is given) is reported as
# skipped: evnserver.finish() returns it when every check was skipped.
#
# In a Windows build the scripts still run on this machine's python3 and
# start the .exe servers through the emulator ctest runs the C tests with
# (Wine): EVN_TEST_WINDOWS=1 and EVN_TEST_EMULATOR tell tests/evnserver.py.
#
# Per backend b (by default EVN_TEST_BACKENDS, every one this build has)
# the test NAME.b runs "python3 SCRIPT ARGS" with EVN_BACKEND=b; "@BACKEND@"
# in ARGS and LABELS stands for b. With NO_BACKENDS: one test, NAME, without
# EVN_BACKEND. ARGS may hold generator expressions ($<TARGET_FILE:...>);
# an empty argument is dropped, so pass --flag=VALUE where VALUE may be empty.
include_guard(DIRECTORY)

# Debian's python3 first: python3-redis installs for it, not for another one
# that may come first in PATH. The standard library is all the scripts need
# otherwise.
find_program(EVN_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EVN_PYTHON3)
  find_program(EVN_PYTHON3 NAMES python3)
endif()
# Without python3 (`make test` installs it) each of these tests is still
# registered, and reports itself skipped, saying why.
if(NOT EVN_PYTHON3)
  set(EVN_PYTHON3 sh -c "echo 'python3 not found: the integration tests need it (scripts/setup.sh test)'; exit 77" --)
endif()

function(evn_python_test name script)
  cmake_parse_arguments(PARSE_ARGV 2 T "NO_BACKENDS" "TIMEOUT;SKIP_RETURN_CODE"
                        "BACKENDS;LABELS;ARGS")
  if(NOT T_TIMEOUT)
    message(FATAL_ERROR "evn_python_test(${name}): TIMEOUT is required")
  endif()
  if(NOT DEFINED T_SKIP_RETURN_CODE)
    set(T_SKIP_RETURN_CODE 77)
  endif()
  set(props TIMEOUT ${T_TIMEOUT} SKIP_RETURN_CODE ${T_SKIP_RETURN_CODE})
  # No __pycache__ in the source tree: nothing ignores it there, and one
  # was committed once.
  set(env PYTHONDONTWRITEBYTECODE=1)
  if(WIN32)
    # One variable, its words split by spaces as a shell would (the
    # emulator may be a list: a program and its arguments).
    string(REPLACE ";" " " emulator "${CMAKE_CROSSCOMPILING_EMULATOR}")
    list(APPEND env EVN_TEST_WINDOWS=1 "EVN_TEST_EMULATOR=${emulator}")
  endif()
  set(cmd ${EVN_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/${script} ${T_ARGS})
  if(T_NO_BACKENDS)
    add_test(NAME ${name} COMMAND ${cmd})
    set_tests_properties(${name} PROPERTIES ${props} ENVIRONMENT "${env}"
      LABELS "${T_LABELS}")
    return()
  endif()
  if(NOT T_BACKENDS)
    set(T_BACKENDS ${EVN_TEST_BACKENDS})
  endif()
  foreach(b ${T_BACKENDS})
    list(TRANSFORM cmd REPLACE "@BACKEND@" ${b} OUTPUT_VARIABLE bcmd)
    list(TRANSFORM T_LABELS REPLACE "@BACKEND@" ${b} OUTPUT_VARIABLE labels)
    add_test(NAME ${name}.${b} COMMAND ${bcmd})
    set_tests_properties(${name}.${b} PROPERTIES ${props}
      ENVIRONMENT "EVN_BACKEND=${b};${env}" LABELS "${labels}")
  endforeach()
endfunction()
