/*
 * crush-supervisor: the front process. Parses the command line, opens the
 * listeners and runs the server until the last workspace is gone.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "supervisor/options.h"
#include "supervisor/server.h"

int main(int argc, char **argv)
{
	static options_t opts;
	static server_t server;

	switch (options_parse(&opts, argc, argv, stdout, stderr)) {
	case OPTIONS_EXIT_OK:
		return 0;
	case OPTIONS_EXIT_USAGE:
		return 2;
	}
	log_min_level = opts.log_level;
	if (server_init(&server, &opts, argv[0]) != 0)
		return 1;
	return server_run(&server);
}
