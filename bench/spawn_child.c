/*
 * spawn_child: the trivial program of the spawn floor (bench/spawn_floor.c).
 * Writes one byte to the socketpair fd (argv[1], default 3), waits for one
 * byte back, then waits for EOF or a signal (default actions: SIGTERM ends
 * it at once). Linked against libc only, no allocation, no work: what is
 * left is the kernel's fork+exec+dynamic loading of libc, and one round trip.
 */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fd = argc > 1 ? atoi(argv[1]) : 3;
	char c = 'h';

	if (write(fd, &c, 1) != 1)
		return 1;
	if (read(fd, &c, 1) != 1)
		return 1;
	/* Stay alive until the parent closes the pair or signals us, so the
	 * parent can also time kill -> reap, and read our memory use. */
	while (read(fd, &c, 1) > 0) {
	}
	return 0;
}
