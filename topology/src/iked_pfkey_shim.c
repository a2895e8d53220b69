/*
 * A stand-in for the kernel's PF_KEY (RFC 2367) for OpenIKED's iked, loaded with LD_PRELOAD.
 *
 * The lab's kernel has no PF_KEY (CONFIG_NET_KEY off) and no ESP, and iked exits at start
 * without a PF_KEY socket. This file replaces socket(PF_KEY, ...) with one end of a Unix
 * datagram socketpair; a thread serves the other end like a key engine that accepts
 * everything: every message gets the reply RFC 2367 describes (same type, sequence number
 * and pid, errno 0), SADB_REGISTER lists the algorithms below, SADB_GETSPI hands out a fresh
 * random SPI in the requested range, SADB_ADD/UPDATE remember the SA (SADB_GET and
 * SADB_DELETE find it, else ESRCH), and the policy messages (SADB_X_SPD*) and flushes just
 * succeed. Nothing reaches a real SA or policy database: no packet is ever encrypted.
 *
 * iked also asks, with setsockopt(IP_IPSEC_POLICY / IPV6_IPSEC_POLICY) in PF_KEY's policy
 * format, that its IKE sockets bypass IPsec, and gives up a socket when that fails
 * (EOPNOTSUPP: without PF_KEY, nothing in the kernel reads that format). With no SA and no
 * policy in any kernel database, everything bypasses IPsec anyway: the call succeeds.
 *
 * The kernel queues a PF_KEY reply before the write that asked for it returns, and iked
 * relies on that: it polls for the reply for 1 ms only ("pfkey_reply: no reply from PF_KEY").
 * The thread is not that fast on a loaded machine, so write(), writev() and sendmsg() on a
 * stand-in socket wait until the reply is there. iked's parent opens the socket and passes it
 * to its ikev2 process (forked earlier, so this code is loaded there too): the sockets' inode
 * numbers are kept in a page mapped shared at load time, before iked forks.
 *
 * Every message is written, one line each, to the file named by $IKED_PFKEY_SHIM_LOG, with
 * the SPI, addresses, algorithms, UDP encapsulation and keys (hex) of SAs, so a test can
 * compare the keys iked derived with its peer's.
 *
 * Build: cc -Wall -Werror -O2 -shared -fPIC -o iked_pfkey_shim.so iked_pfkey_shim.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipsec.h>
#include <linux/pfkeyv2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_SAS 256
#define BUF 65536

/* An SA the "kernel" holds: enough to answer GET and DELETE. */
struct sa {
	uint32_t spi;
	uint8_t satype;
	int used;
};

/* The stand-in sockets (iked's end), in every process of iked. */
struct shared {
	int n;
	ino_t ino[8];
};

static struct shared *shared;
static struct sa sas[MAX_SAS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *logf;

static const char *type_name(uint8_t t)
{
	static const char *names[] = {
		"RESERVED", "GETSPI", "UPDATE", "ADD", "DELETE", "GET", "ACQUIRE", "REGISTER",
		"EXPIRE", "FLUSH", "DUMP", "X_PROMISC", "X_PCHANGE", "X_SPDUPDATE", "X_SPDADD",
		"X_SPDDELETE", "X_SPDGET", "X_SPDACQUIRE", "X_SPDDUMP", "X_SPDFLUSH",
		"X_SPDSETIDX", "X_SPDEXPIRE", "X_SPDDELETE2", "X_NAT_T_NEW_MAPPING", "X_MIGRATE",
	};
	return t <= SADB_MAX ? names[t] : "UNKNOWN";
}

/* The extension of type `want` in a message of `len` bytes, or NULL. */
static struct sadb_ext *find_ext(uint8_t *msg, size_t len, uint16_t want)
{
	size_t off = sizeof(struct sadb_msg);
	while (off + sizeof(struct sadb_ext) <= len) {
		struct sadb_ext *e = (struct sadb_ext *)(msg + off);
		size_t elen = (size_t)e->sadb_ext_len * 8;
		if (elen == 0 || off + elen > len)
			return NULL;
		if (e->sadb_ext_type == want)
			return e;
		off += elen;
	}
	return NULL;
}

static void log_addr(uint8_t *msg, size_t len, uint16_t type, const char *name)
{
	struct sadb_address *a = (struct sadb_address *)find_ext(msg, len, type);
	char s[INET6_ADDRSTRLEN] = "?";
	if (!a)
		return;
	struct sockaddr *sa = (struct sockaddr *)(a + 1);
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, s, sizeof(s));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, s, sizeof(s));
	fprintf(logf, " %s=%s/%u", name, s, a->sadb_address_prefixlen);
}

static void log_key(uint8_t *msg, size_t len, uint16_t type, const char *name)
{
	struct sadb_key *k = (struct sadb_key *)find_ext(msg, len, type);
	if (!k)
		return;
	uint8_t *b = (uint8_t *)(k + 1);
	size_t n = k->sadb_key_bits / 8;
	if (sizeof(*k) + n > (size_t)k->sadb_key_len * 8)
		n = (size_t)k->sadb_key_len * 8 - sizeof(*k);
	fprintf(logf, " %s=", name);
	for (size_t i = 0; i < n; i++)
		fprintf(logf, "%02x", b[i]);
}

/* One line for the message: its type and whatever identifies an SA or a policy. */
static void log_msg(uint8_t *msg, size_t len)
{
	struct sadb_msg *h = (struct sadb_msg *)msg;
	fprintf(logf, "%s satype=%u seq=%u", type_name(h->sadb_msg_type), h->sadb_msg_satype,
		h->sadb_msg_seq);
	struct sadb_sa *sa = (struct sadb_sa *)find_ext(msg, len, SADB_EXT_SA);
	if (sa)
		fprintf(logf, " spi=0x%08x encr=%u auth=%u", ntohl(sa->sadb_sa_spi),
			sa->sadb_sa_encrypt, sa->sadb_sa_auth);
	log_addr(msg, len, SADB_EXT_ADDRESS_SRC, "src");
	log_addr(msg, len, SADB_EXT_ADDRESS_DST, "dst");
	struct sadb_x_nat_t_type *nt =
		(struct sadb_x_nat_t_type *)find_ext(msg, len, SADB_X_EXT_NAT_T_TYPE);
	if (nt)
		fprintf(logf, " encap=%u", nt->sadb_x_nat_t_type_type);
	struct sadb_x_nat_t_port *p;
	p = (struct sadb_x_nat_t_port *)find_ext(msg, len, SADB_X_EXT_NAT_T_SPORT);
	if (p)
		fprintf(logf, " sport=%u", ntohs(p->sadb_x_nat_t_port_port));
	p = (struct sadb_x_nat_t_port *)find_ext(msg, len, SADB_X_EXT_NAT_T_DPORT);
	if (p)
		fprintf(logf, " dport=%u", ntohs(p->sadb_x_nat_t_port_port));
	struct sadb_x_policy *pol = (struct sadb_x_policy *)find_ext(msg, len, SADB_X_EXT_POLICY);
	if (pol)
		fprintf(logf, " dir=%u", pol->sadb_x_policy_dir);
	log_key(msg, len, SADB_EXT_KEY_ENCRYPT, "enckey");
	log_key(msg, len, SADB_EXT_KEY_AUTH, "authkey");
	fputc('\n', logf);
	fflush(logf);
}

static struct sa *lookup(uint32_t spi, uint8_t satype)
{
	for (int i = 0; i < MAX_SAS; i++)
		if (sas[i].used && sas[i].spi == spi && sas[i].satype == satype)
			return &sas[i];
	return NULL;
}

static void remember(uint32_t spi, uint8_t satype)
{
	if (lookup(spi, satype))
		return;
	for (int i = 0; i < MAX_SAS; i++)
		if (!sas[i].used) {
			sas[i] = (struct sa){ .spi = spi, .satype = satype, .used = 1 };
			return;
		}
}

/* Appends an extension of `len` bytes (a multiple of 8) to the reply; returns its start. */
static uint8_t *append(uint8_t *out, size_t *olen, const void *ext, size_t len)
{
	uint8_t *at = out + *olen;
	memcpy(at, ext, len);
	*olen += len;
	return at;
}

/* SADB_REGISTER's reply: what esprit's tests negotiate with iked, as Linux names them. */
static void add_supported(uint8_t *out, size_t *olen)
{
	static const struct sadb_alg auth[] = {
		{ SADB_X_AALG_SHA2_256HMAC, 0, 256, 256, 0 },
		{ SADB_X_AALG_SHA2_384HMAC, 0, 384, 384, 0 },
		{ SADB_X_AALG_SHA2_512HMAC, 0, 512, 512, 0 },
	};
	static const struct sadb_alg enc[] = {
		{ SADB_X_EALG_AESCBC, 16, 128, 256, 0 },
		{ SADB_X_EALG_AES_GCM_ICV16, 8, 160, 288, 0 },
	};
	struct sadb_supported s = { 0 };
	s.sadb_supported_len = (sizeof(s) + sizeof(auth)) / 8;
	s.sadb_supported_exttype = SADB_EXT_SUPPORTED_AUTH;
	append(out, olen, &s, sizeof(s));
	append(out, olen, auth, sizeof(auth));
	s.sadb_supported_len = (sizeof(s) + sizeof(enc)) / 8;
	s.sadb_supported_exttype = SADB_EXT_SUPPORTED_ENCRYPT;
	append(out, olen, &s, sizeof(s));
	append(out, olen, enc, sizeof(enc));
}

/* The reply to one request of `len` bytes, in `out`; its length. Called with `lock` held. */
static size_t answer(uint8_t *msg, size_t len, uint8_t *out)
{
	struct sadb_msg *h = (struct sadb_msg *)msg;
	struct sadb_sa *sa = (struct sadb_sa *)find_ext(msg, len, SADB_EXT_SA);
	size_t olen = sizeof(*h);
	memcpy(out, h, sizeof(*h));
	struct sadb_msg *r = (struct sadb_msg *)out;
	r->sadb_msg_errno = 0;
	switch (h->sadb_msg_type) {
	case SADB_REGISTER:
		add_supported(out, &olen);
		break;
	case SADB_GETSPI: {
		struct sadb_spirange *rg =
			(struct sadb_spirange *)find_ext(msg, len, SADB_EXT_SPIRANGE);
		uint32_t lo = rg ? rg->sadb_spirange_min : 0x100, hi = rg ? rg->sadb_spirange_max : ~0u;
		uint32_t spi;
		do {
			if (getrandom(&spi, sizeof(spi), 0) != sizeof(spi))
				spi = (uint32_t)random();
			if (hi <= lo)
				spi = lo;
			else if (hi - lo < UINT32_MAX)
				spi = lo + spi % (hi - lo + 1);
		} while (lookup(htonl(spi), h->sadb_msg_satype) && hi > lo);
		remember(htonl(spi), h->sadb_msg_satype);
		struct sadb_sa s = { 0 };
		s.sadb_sa_len = sizeof(s) / 8;
		s.sadb_sa_exttype = SADB_EXT_SA;
		s.sadb_sa_spi = htonl(spi);
		s.sadb_sa_state = SADB_SASTATE_LARVAL;
		append(out, &olen, &s, sizeof(s));
		/* RFC 2367 §3.1.1: <base, SA, address(SD)>. */
		for (uint16_t t = SADB_EXT_ADDRESS_SRC; t <= SADB_EXT_ADDRESS_DST; t++) {
			struct sadb_ext *e = find_ext(msg, len, t);
			if (e)
				append(out, &olen, e, (size_t)e->sadb_ext_len * 8);
		}
		fprintf(logf, "GETSPI-REPLY satype=%u spi=0x%08x\n", h->sadb_msg_satype, spi);
		break;
	}
	case SADB_GET:
	case SADB_DELETE:
		if (!sa || !lookup(sa->sadb_sa_spi, h->sadb_msg_satype)) {
			r->sadb_msg_errno = ESRCH;
			break;
		}
		if (h->sadb_msg_type == SADB_DELETE)
			lookup(sa->sadb_sa_spi, h->sadb_msg_satype)->used = 0;
		/* fall through: the reply repeats the request */
	default:
		if ((h->sadb_msg_type == SADB_ADD || h->sadb_msg_type == SADB_UPDATE) && sa)
			remember(sa->sadb_sa_spi, h->sadb_msg_satype);
		/* The request's extensions, without keys (RFC 2367 §3.1.3/3.1.2). */
		for (size_t off = sizeof(*h); off + sizeof(struct sadb_ext) <= len;) {
			struct sadb_ext *e = (struct sadb_ext *)(msg + off);
			size_t elen = (size_t)e->sadb_ext_len * 8;
			if (elen == 0 || off + elen > len)
				break;
			if (e->sadb_ext_type != SADB_EXT_KEY_AUTH &&
			    e->sadb_ext_type != SADB_EXT_KEY_ENCRYPT)
				append(out, &olen, e, elen);
			off += elen;
		}
	}
	r->sadb_msg_len = olen / 8;
	if (r->sadb_msg_errno)
		fprintf(logf, "%s-REPLY errno=%u\n", type_name(h->sadb_msg_type), r->sadb_msg_errno);
	fflush(logf);
	return olen;
}

/* Serves one PF_KEY socket: the far end of the socketpair. */
static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *in = malloc(BUF), *out = malloc(BUF);
	if (!in || !out) {
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t n = recv(fd, in, BUF, 0);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			close(fd);
			free(in);
			free(out);
			return NULL;
		}
		if ((size_t)n < sizeof(struct sadb_msg))
			continue;
		pthread_mutex_lock(&lock);
		log_msg(in, (size_t)n);
		size_t olen = answer(in, (size_t)n, out);
		pthread_mutex_unlock(&lock);
		if (send(fd, out, olen, 0) < 0)
			fprintf(logf, "send: %s\n", strerror(errno));
	}
}

__attribute__((constructor)) static void shim_init(void)
{
	void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shared = p == MAP_FAILED ? NULL : p;
}

static int is_stand_in(int fd)
{
	struct stat st;
	if (!shared || !__atomic_load_n(&shared->n, __ATOMIC_ACQUIRE) || fstat(fd, &st) < 0 ||
	    !S_ISSOCK(st.st_mode))
		return 0;
	for (int i = 0; i < shared->n && i < 8; i++)
		if (shared->ino[i] == st.st_ino)
			return 1;
	return 0;
}

/* After a request to the stand-in: wait (5 s at most) until its reply is queued. */
static void await_reply(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 5000) < 0 && errno == EINTR)
		;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	static ssize_t (*real_write)(int, const void *, size_t);
	if (!real_write)
		real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	ssize_t r = real_write(fd, buf, len);
	if (r > 0 && is_stand_in(fd))
		await_reply(fd);
	return r;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	static ssize_t (*real_writev)(int, const struct iovec *, int);
	if (!real_writev)
		real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
	ssize_t r = real_writev(fd, iov, n);
	if (r > 0 && is_stand_in(fd))
		await_reply(fd);
	return r;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
	if (!real_sendmsg)
		real_sendmsg =
			(ssize_t(*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
	ssize_t r = real_sendmsg(fd, msg, flags);
	if (r > 0 && is_stand_in(fd))
		await_reply(fd);
	return r;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
	if (!real_setsockopt)
		real_setsockopt = (int (*)(int, int, int, const void *, socklen_t))dlsym(
			RTLD_NEXT, "setsockopt");
	int r = real_setsockopt(fd, level, name, val, len);
	if (r < 0 && errno == EOPNOTSUPP &&
	    ((level == SOL_IP && name == IP_IPSEC_POLICY) ||
	     (level == SOL_IPV6 && name == IPV6_IPSEC_POLICY)))
		return 0;
	return r;
}

int socket(int domain, int type, int protocol)
{
	static int (*real_socket)(int, int, int);
	if (!real_socket)
		real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
	if (domain != PF_KEY)
		return real_socket(domain, type, protocol);
	if (!logf) {
		const char *path = getenv("IKED_PFKEY_SHIM_LOG");
		logf = fopen(path ? path : "/dev/null", "a");
		if (!logf)
			return -1;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (!(type & SOCK_CLOEXEC))
		fcntl(sv[0], F_SETFD, 0);
	if (type & SOCK_NONBLOCK)
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
	pthread_t t;
	if (pthread_create(&t, NULL, serve, (void *)(intptr_t)sv[1]) != 0) {
		close(sv[0]);
		close(sv[1]);
		errno = ENOBUFS;
		return -1;
	}
	pthread_detach(t);
	struct stat st;
	if (shared && fstat(sv[0], &st) == 0 && shared->n < 8) {
		shared->ino[shared->n] = st.st_ino;
		__atomic_store_n(&shared->n, shared->n + 1, __ATOMIC_RELEASE);
	}
	fprintf(logf, "SOCKET pid=%d\n", getpid());
	fflush(logf);
	return sv[0];
}
