/*
 * tenantctl.proxy._relay: the proxy's byte relay in native code.
 *
 * Once a session is past its handshake the proxy no longer looks at the bytes, so relaying them is
 * the whole per-transaction cost. The asyncio relay pays for a Python callback, a bytes object and a
 * transport write per packet; this module pays for one recv() and one send(), like PgBouncer does.
 *
 * A Relay owns one or more worker threads, each with its own epoll set. `add()` duplicates the two
 * sockets of a session (the caller then closes its own copies) and hands them to a worker, which
 * relays until either side closes. Workers never touch Python objects, so they run without the GIL.
 * When a session ends its id and byte counts are queued and an eventfd is signalled: the event loop
 * watches that descriptor and collects them with `closed()`.
 *
 * Priority: workers may run a few nice levels below the proxy's Python threads (`nice`), so that when
 * relaying saturates the CPU the control plane the relay depends on (handshakes, cancels, map
 * reloads, /healthz) still gets its turn. See choose_relay_nice() in native.py for the trade-off.
 *
 * Backpressure: when a send() is short, the rest is kept and the source socket is no longer read
 * until the destination accepts it (EPOLLOUT), so at most one chunk per direction is ever buffered.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef __linux__
#error "tenantctl.proxy._relay needs Linux (epoll, eventfd)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK 65536
#define MAX_EVENTS 256
#define MAX_WORKERS 64

typedef struct relay_state relay_state;
typedef struct worker worker;
typedef struct relay_link relay_link;

typedef struct {
    relay_link *owner;
    int fd;
    int side;          /* 0: client, 1: backend */
    uint32_t interest; /* events currently registered with epoll */
} link_end;

struct relay_link {
    long long id;
    link_end ends[2];
    char *pending[2];      /* pending[k]: bytes read from the other end, not yet written to ends[k] */
    size_t pending_off[2];
    size_t pending_len[2];
    uint64_t received[2];  /* bytes read from ends[k]; written by the worker, read under the lock */
    int closing;           /* one side reached EOF: flush what is pending, then close */
    int dead;
    worker *owner_worker;
    relay_link *prev, *next;     /* the relay's registry of live links (under the lock) */
    relay_link *grave_next;      /* freed after the current epoll batch */
};

typedef struct {
    long long id;
    uint64_t from_client;
    uint64_t from_backend;
} closed_record;

struct worker {
    relay_state *relay;
    int epfd;
    int stopfd;
    pthread_t thread;
    int started;
    relay_link *graveyard;
};

struct relay_state {
    pthread_mutex_t lock;
    relay_link *live;              /* registry head */
    Py_ssize_t live_count;
    closed_record *closed;   /* queue of ended sessions, drained by closed() */
    size_t closed_len, closed_cap;
    int notifyfd;
    worker workers[MAX_WORKERS];
    int nworkers;
    unsigned next_worker;
    int nice;                      /* added to each worker's nice value when it starts */
    int stopped;
};

typedef struct {
    PyObject_HEAD
    relay_state *state;
} RelayObject;

/* ---------------------------------------------------------------------------------------------- */
/* worker side: no Python API below this line until the type definition                          */

static void set_interest(worker *w, link_end *e, uint32_t wanted) {
    if (e->interest == wanted || e->fd < 0)
        return;
    struct epoll_event ev;
    ev.events = wanted;
    ev.data.ptr = e;
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, e->fd, &ev);
    e->interest = wanted;
}

/* End k may be read while nothing read from it is still waiting for the other end, and may be written
 * to while something is pending for it. */
static void update_interest(worker *w, relay_link *l) {
    for (int k = 0; k < 2; k++) {
        uint32_t wanted = 0;
        if (!l->closing && l->pending[1 - k] == NULL)
            wanted |= EPOLLIN;
        if (l->pending[k] != NULL)
            wanted |= EPOLLOUT;
        set_interest(w, &l->ends[k], wanted);
    }
}

static void queue_closed(relay_state *r, relay_link *l) {
    /* called with the lock held */
    if (r->closed_len == r->closed_cap) {
        size_t cap = r->closed_cap ? r->closed_cap * 2 : 64;
        closed_record *grown = realloc(r->closed, cap * sizeof(closed_record));
        if (grown == NULL)
            return; /* out of memory: the session's byte counts are lost, the session still ends */
        r->closed = grown;
        r->closed_cap = cap;
    }
    closed_record *rec = &r->closed[r->closed_len++];
    rec->id = l->id;
    rec->from_client = __atomic_load_n(&l->received[0], __ATOMIC_RELAXED);
    rec->from_backend = __atomic_load_n(&l->received[1], __ATOMIC_RELAXED);
}

static void close_link(worker *w, relay_link *l) {
    if (l->dead)
        return;
    relay_state *r = w->relay;
    pthread_mutex_lock(&r->lock);
    l->dead = 1;
    if (l->prev)
        l->prev->next = l->next;
    else
        r->live = l->next;
    if (l->next)
        l->next->prev = l->prev;
    r->live_count--;
    for (int k = 0; k < 2; k++) {
        if (l->ends[k].fd >= 0) {
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->ends[k].fd, NULL);
            close(l->ends[k].fd);
            l->ends[k].fd = -1;
        }
        free(l->pending[k]);
        l->pending[k] = NULL;
    }
    queue_closed(r, l);
    pthread_mutex_unlock(&r->lock);
    uint64_t one = 1;
    ssize_t ignored = write(r->notifyfd, &one, sizeof one);
    (void)ignored;
    l->grave_next = w->graveyard;
    w->graveyard = l;
}

/* Writes `data` to end k; keeps what the socket does not take. Returns -1 when the link must close. */
static int send_to(relay_link *l, int k, const char *data, size_t len) {
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(l->ends[k].fd, data + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (sent < len) {
        char *copy = malloc(len - sent);
        if (copy == NULL)
            return -1;
        memcpy(copy, data + sent, len - sent);
        l->pending[k] = copy;
        l->pending_off[k] = 0;
        l->pending_len[k] = len - sent;
    }
    return 0;
}

static int flush_pending(relay_link *l, int k) {
    while (l->pending[k] != NULL) {
        size_t left = l->pending_len[k] - l->pending_off[k];
        ssize_t n = send(l->ends[k].fd, l->pending[k] + l->pending_off[k], left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        l->pending_off[k] += (size_t)n;
        if (l->pending_off[k] == l->pending_len[k]) {
            free(l->pending[k]);
            l->pending[k] = NULL;
        }
    }
    return 0;
}

static void handle(worker *w, link_end *e, uint32_t events, char *chunk) {
    relay_link *l = e->owner;
    if (l->dead)
        return;
    int k = e->side, other = 1 - k;
    if (events & EPOLLERR) {
        close_link(w, l);
        return;
    }
    if ((events & EPOLLOUT) && l->pending[k] != NULL) {
        if (flush_pending(l, k) < 0) {
            close_link(w, l);
            return;
        }
    }
    if ((events & (EPOLLIN | EPOLLHUP)) && !l->closing && l->pending[other] == NULL) {
        ssize_t n = recv(e->fd, chunk, CHUNK, 0);
        if (n > 0) {
            __atomic_store_n(&l->received[k], l->received[k] + (uint64_t)n, __ATOMIC_RELAXED);
            if (send_to(l, other, chunk, (size_t)n) < 0) {
                close_link(w, l);
                return;
            }
        } else if (n == 0) {
            l->closing = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close_link(w, l);
            return;
        }
    } else if (events & EPOLLHUP) {
        /* hung up while we were not reading it: nothing more can be delivered to it */
        close_link(w, l);
        return;
    }
    if (l->closing && l->pending[0] == NULL && l->pending[1] == NULL) {
        close_link(w, l);
        return;
    }
    update_interest(w, l);
}

static void lower_own_priority(int increment) {
    /* Relative to the thread's current value, so that a proxy started with `nice` keeps the
     * difference; raising a nice value never needs a privilege. */
    if (increment <= 0)
        return;
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, tid);
    if (current == -1 && errno != 0)
        return;
    int wanted = current + increment > 19 ? 19 : current + increment;
    (void)setpriority(PRIO_PROCESS, tid, wanted);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    lower_own_priority(w->relay->nice);
    struct epoll_event events[MAX_EVENTS];
    char *chunk = malloc(CHUNK);
    if (chunk == NULL)
        return NULL;
    for (;;) {
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int stop = 0;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                stop = 1;
                continue;
            }
            handle(w, events[i].data.ptr, events[i].events, chunk);
        }
        while (w->graveyard != NULL) {
            relay_link *dead = w->graveyard;
            w->graveyard = dead->grave_next;
            free(dead);
        }
        if (stop)
            break;
    }
    free(chunk);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* state setup and teardown (called from Python, without the GIL where they may block)             */

static int dup_nonblocking(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return -1;
    int flags = fcntl(copy, F_GETFL);
    if (flags < 0 || fcntl(copy, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(copy);
        return -1;
    }
    return copy;
}

static void stop_workers(relay_state *r) {
    for (int i = 0; i < r->nworkers; i++) {
        if (r->workers[i].started) {
            uint64_t one = 1;
            ssize_t ignored = write(r->workers[i].stopfd, &one, sizeof one);
            (void)ignored;
        }
    }
    for (int i = 0; i < r->nworkers; i++) {
        if (r->workers[i].started) {
            pthread_join(r->workers[i].thread, NULL);
            r->workers[i].started = 0;
        }
    }
}

static void free_state(relay_state *r) {
    /* workers are stopped: nothing else touches the links */
    relay_link *l = r->live;
    while (l != NULL) {
        relay_link *next = l->next;
        for (int k = 0; k < 2; k++) {
            if (l->ends[k].fd >= 0)
                close(l->ends[k].fd);
            free(l->pending[k]);
        }
        free(l);
        l = next;
    }
    for (int i = 0; i < r->nworkers; i++) {
        if (r->workers[i].epfd >= 0)
            close(r->workers[i].epfd);
        if (r->workers[i].stopfd >= 0)
            close(r->workers[i].stopfd);
    }
    if (r->notifyfd >= 0)
        close(r->notifyfd);
    free(r->closed);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---------------------------------------------------------------------------------------------- */
/* the Python type                                                                                 */

static PyObject *Relay_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"threads", "nice", NULL};
    int threads = 1, nice = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ii", keywords, &threads, &nice))
        return NULL;
    if (threads < 1 || threads > MAX_WORKERS) {
        PyErr_Format(PyExc_ValueError, "threads must be between 1 and %d", MAX_WORKERS);
        return NULL;
    }
    if (nice < 0 || nice > 19) {
        PyErr_SetString(PyExc_ValueError, "nice must be between 0 and 19");
        return NULL;
    }
    relay_state *r = calloc(1, sizeof(relay_state));
    if (r == NULL)
        return PyErr_NoMemory();
    pthread_mutex_init(&r->lock, NULL);
    r->notifyfd = -1;
    for (int i = 0; i < MAX_WORKERS; i++) {
        r->workers[i].epfd = -1;
        r->workers[i].stopfd = -1;
    }
    r->nworkers = threads;
    r->nice = nice;
    r->notifyfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->notifyfd < 0)
        goto os_error;
    for (int i = 0; i < threads; i++) {
        worker *w = &r->workers[i];
        w->relay = r;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->epfd < 0 || w->stopfd < 0)
            goto os_error;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &ev) < 0)
            goto os_error;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "cannot start a relay thread");
            goto fail;
        }
        w->started = 1;
    }
    RelayObject *self = (RelayObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto fail;
    self->state = r;
    return (PyObject *)self;
os_error:
    PyErr_SetFromErrno(PyExc_OSError);
fail:
    stop_workers(r);
    free_state(r);
    return NULL;
}

static relay_state *open_state(RelayObject *self) {
    if (self->state == NULL || self->state->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "the relay is closed");
        return NULL;
    }
    return self->state;
}

static PyObject *Relay_add(RelayObject *self, PyObject *args) {
    long long id;
    int client_fd, backend_fd;
    if (!PyArg_ParseTuple(args, "Lii", &id, &client_fd, &backend_fd))
        return NULL;
    relay_state *r = open_state(self);
    if (r == NULL)
        return NULL;
    int fds[2] = {dup_nonblocking(client_fd), dup_nonblocking(backend_fd)};
    if (fds[0] < 0 || fds[1] < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return NULL;
    }
    relay_link *l = calloc(1, sizeof(relay_link));
    if (l == NULL) {
        close(fds[0]);
        close(fds[1]);
        return PyErr_NoMemory();
    }
    l->id = id;
    worker *w = &r->workers[r->next_worker++ % (unsigned)r->nworkers];
    l->owner_worker = w;
    for (int k = 0; k < 2; k++) {
        l->ends[k].owner = l;
        l->ends[k].fd = fds[k];
        l->ends[k].side = k;
        l->ends[k].interest = EPOLLIN;
    }
    pthread_mutex_lock(&r->lock);
    l->next = r->live;
    if (r->live)
        r->live->prev = l;
    r->live = l;
    r->live_count++;
    /* Registered under the lock: the worker cannot close the link before both ends are in epoll. */
    int added = 0, failed = 0;
    for (; added < 2; added++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ends[added]};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fds[added], &ev) < 0) {
            failed = errno;
            break;
        }
    }
    if (failed && added == 0) {
        r->live = l->next;
        if (l->next)
            l->next->prev = NULL;
        r->live_count--;
    } else if (failed) {
        /* The worker may already be relaying the first end: let it see the hang-up and clean up. */
        shutdown(fds[0], SHUT_RDWR);
        shutdown(fds[1], SHUT_RDWR);
    }
    pthread_mutex_unlock(&r->lock);
    if (failed && added == 0) {
        close(fds[0]);
        close(fds[1]);
        free(l);
    }
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static relay_link *find_live(relay_state *r, long long id) {
    /* with the lock held; linear, but only used for aborts and metrics scrapes */
    for (relay_link *l = r->live; l != NULL; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

static PyObject *Relay_abort(RelayObject *self, PyObject *args) {
    long long id;
    if (!PyArg_ParseTuple(args, "L", &id))
        return NULL;
    relay_state *r = open_state(self);
    if (r == NULL)
        return NULL;
    pthread_mutex_lock(&r->lock);
    relay_link *l = find_live(r, id);
    if (l != NULL) {
        /* The worker sees both sockets hang up and closes the link (the fds stay valid until then). */
        shutdown(l->ends[0].fd, SHUT_RDWR);
        shutdown(l->ends[1].fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&r->lock);
    return PyBool_FromLong(l != NULL);
}

static PyObject *Relay_counters(RelayObject *self, PyObject *Py_UNUSED(ignored)) {
    relay_state *r = open_state(self);
    if (r == NULL)
        return NULL;
    /* Copied under the lock, turned into Python objects after it: no Python code runs with it held. */
    pthread_mutex_lock(&r->lock);
    size_t n = (size_t)r->live_count, i = 0;
    closed_record *rows = malloc((n ? n : 1) * sizeof(closed_record));
    for (relay_link *l = r->live; rows != NULL && l != NULL && i < n; l = l->next, i++) {
        rows[i].id = l->id;
        rows[i].from_client = __atomic_load_n(&l->received[0], __ATOMIC_RELAXED);
        rows[i].from_backend = __atomic_load_n(&l->received[1], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&r->lock);
    if (rows == NULL)
        return PyErr_NoMemory();
    PyObject *result = PyDict_New();
    for (size_t j = 0; result != NULL && j < i; j++) {
        PyObject *key = PyLong_FromLongLong(rows[j].id);
        PyObject *value = Py_BuildValue("(KK)", (unsigned long long)rows[j].from_client,
                                        (unsigned long long)rows[j].from_backend);
        if (key == NULL || value == NULL || PyDict_SetItem(result, key, value) < 0)
            Py_CLEAR(result);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    free(rows);
    return result;
}

static PyObject *Relay_closed(RelayObject *self, PyObject *Py_UNUSED(ignored)) {
    relay_state *r = self->state;
    if (r == NULL)
        return PyList_New(0);
    uint64_t count;
    ssize_t ignored = read(r->notifyfd, &count, sizeof count); /* reset the eventfd */
    (void)ignored;
    pthread_mutex_lock(&r->lock);
    size_t len = r->closed_len;
    closed_record *records = r->closed;
    r->closed = NULL;
    r->closed_len = r->closed_cap = 0;
    pthread_mutex_unlock(&r->lock);
    PyObject *result = PyList_New((Py_ssize_t)len);
    if (result == NULL) {
        free(records);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        PyObject *item = Py_BuildValue("(LKK)", records[i].id, (unsigned long long)records[i].from_client,
                                       (unsigned long long)records[i].from_backend);
        if (item == NULL) {
            free(records);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    free(records);
    return result;
}

static PyObject *Relay_fileno(RelayObject *self, PyObject *Py_UNUSED(ignored)) {
    relay_state *r = open_state(self);
    if (r == NULL)
        return NULL;
    return PyLong_FromLong(r->notifyfd);
}

static PyObject *Relay_len(RelayObject *self, PyObject *Py_UNUSED(ignored)) {
    relay_state *r = self->state;
    if (r == NULL)
        return PyLong_FromLong(0);
    pthread_mutex_lock(&r->lock);
    Py_ssize_t n = r->live_count;
    pthread_mutex_unlock(&r->lock);
    return PyLong_FromSsize_t(n);
}

static void close_state(RelayObject *self) {
    relay_state *r = self->state;
    if (r == NULL)
        return;
    self->state = NULL;
    r->stopped = 1;
    Py_BEGIN_ALLOW_THREADS
    stop_workers(r);
    Py_END_ALLOW_THREADS
    free_state(r);
}

static PyObject *Relay_close(RelayObject *self, PyObject *Py_UNUSED(ignored)) {
    close_state(self);
    Py_RETURN_NONE;
}

static void Relay_dealloc(RelayObject *self) {
    close_state(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Relay_methods[] = {
    {"add", (PyCFunction)Relay_add, METH_VARARGS,
     "add(link_id, client_fd, backend_fd): relay between duplicates of the two sockets until one closes."},
    {"abort", (PyCFunction)Relay_abort, METH_VARARGS,
     "abort(link_id) -> bool: shut both sockets of a live relay_link down; it is reported by closed() soon."},
    {"counters", (PyCFunction)Relay_counters, METH_NOARGS,
     "counters() -> {link_id: (bytes_from_client, bytes_from_backend)} for the live links."},
    {"closed", (PyCFunction)Relay_closed, METH_NOARGS,
     "closed() -> [(link_id, bytes_from_client, bytes_from_backend)]: links ended since the last call."},
    {"fileno", (PyCFunction)Relay_fileno, METH_NOARGS,
     "fileno() -> int: an eventfd that becomes readable when closed() has something."},
    {"live", (PyCFunction)Relay_len, METH_NOARGS, "live() -> int: links being relayed."},
    {"close", (PyCFunction)Relay_close, METH_NOARGS, "close(): stop the workers and close every live relay_link."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tenantctl.proxy._relay.Relay",
    .tp_basicsize = sizeof(RelayObject),
    .tp_dealloc = (destructor)Relay_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Relay(threads=1, nice=0): native byte relay between pairs of sockets (epoll worker threads,\n"
              "each `nice` levels below the thread that creates them).",
    .tp_methods = Relay_methods,
    .tp_new = Relay_new,
};

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT, "_relay", "Native byte relay for the tenantctl proxy (Linux epoll).", -1, NULL,
};

PyMODINIT_FUNC PyInit__relay(void) {
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&relay_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(module, "Relay", (PyObject *)&RelayType) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
