/*
 * Test keys for the auth suite, generated once with openssl for these tests
 * only (never used anywhere else): an RSA 2048 pair, a second unrelated RSA
 * pair and an EC P-256 pair.  Private keys are PKCS#8 PEM, public keys SPKI PEM.
 */
#ifndef HERALD_TEST_JWT_KEYS_H
#define HERALD_TEST_JWT_KEYS_H

static const char TEST_RSA_PRIV[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDnVhafjcIIWTwl\n"
    "IyvNg0HakFiCYHk3qcec1K7mUBzEBIjmX27hdjEH7AqyxOYLcPxQSERQtFYDYi0Z\n"
    "enMPuoeYPASpWAFZD/xagbhJ9bxe/c2+L6VDtAVk74TdxcFtv+mJKizXMQKKOW4J\n"
    "bQSs3JJZSMdKQniC9/INAQd7XkfhXP0gALWu8uJGuJU67F55nHn9nndk0ElO+ewN\n"
    "BE3AJgIRQUzk0wDaF6T003/VP23Sij21/04WIzBWSoMx0VG/1f2cWLd2pL1yad4r\n"
    "EMRuCZ4Pzjj33sahPR/HSaAw0GLeWPxZnSuKKfe3skWpPZ0sgiYNecZwSHtTE1b7\n"
    "llo7Cxk/AgMBAAECggEADyUVLRPoQIirBdlkHDu8G3V4vexX8ztzvII2AxD6mSCc\n"
    "38weo7cLpbOfza1TTCt08UKR6mCsAuOyBSl9j+mLx/0h5v5CdFS2FizI5lqmnudp\n"
    "yUowPRrzgXSm06gHLkqynM68icgFHQx+djKDbFeyYxL/LQ7l+dkGqTBIj5yQAyJl\n"
    "9brQZ5mHHh4IS/y2+cLnCURZaUHCt99Ry3JhE3A4GAl78Oze+YKhKkk8LmX1P4Ur\n"
    "9HSU7/Vc3upi5fvWl92VOru9Lr8FcFj9ikkDDyBBeFlAR7/MkKrh8W7bzV7voMQ1\n"
    "0ksxtdpB5AOXr9wp1GuXkX8qrG02e7Blxw6dpKbGAQKBgQD6D2kCkeN14gMPHQKb\n"
    "JFB/GxJdiSRfkNAPXFqccJ6Ht5EPNfoeiQcmEZqdrEq0zfrQ3yVyktuWBaNNTriE\n"
    "SHf63ur5rXfVNmJ0i3axCSucDBxq+vfL9L0twOp9BBlhyxidbS+ilr9WAJd/twND\n"
    "dNXFGDUCfjMExLF96285pViyAQKBgQDs1NHtJP/8kb+c2UQSH99ebcGry+jGSvmF\n"
    "pnq0J9zy1PwrCuTxVHWPgoIn9kplN5wiucLkZpeJWmSxdu/WOaGqxblnXAho8YJs\n"
    "FUqURA/DoG0AURZV90PqAr5pPVFcrmyjZA8FzPaYZBv0Xqa5RMou1S8JXL6u6tAk\n"
    "0AwdvBFLPwKBgQCpJMdZL6l2UZzUGkFrA5NXhs5TarKp2eCCo2u/KgZxst9yNIat\n"
    "JO8q9vlo8ePOjQ29P1OrPl8+CS4+2qLBB+vwS90Rah8Gn7TVNIjik1tmQGLwkjYP\n"
    "Rcq5KibyzVUF60UJJ5PzHJjr6ZaQkxCoDl2S5h7lQsvry8hrbldb3NY0AQJ/aImI\n"
    "ICU02Ud8TL+aTGXFMuk/k5VuKhjuCxBxGRR/crCQnm8wn1WojrAMw5bzP7pMMQfN\n"
    "/wNJ4FcGG09kjiriMX8VV4pILApuh0bepJNmYfNuKbWhJlD+qUyMv+dRApf7XCPO\n"
    "fcD7GEkYDcW50g2LMSDoojlN8eez+IvczUM2XwKBgHkuUIgA3mUomcnKG5c2wQiu\n"
    "ipZKgsSnX2Bgh9pG3lq6rKAcP9cUXi0lTdxIuE3ABWildsTHZcy+xIYqHE5gzkAu\n"
    "6BOzkjBHR2r1ihmw4dg8OlyGajACjexmmOIUEdjufX8nOcXj/Oac8D+IGT+MQxCs\n"
    "DE/XVdzGgve2PzxzCcRF\n"
    "-----END PRIVATE KEY-----\n";

static const char TEST_RSA_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA51YWn43CCFk8JSMrzYNB\n"
    "2pBYgmB5N6nHnNSu5lAcxASI5l9u4XYxB+wKssTmC3D8UEhEULRWA2ItGXpzD7qH\n"
    "mDwEqVgBWQ/8WoG4SfW8Xv3Nvi+lQ7QFZO+E3cXBbb/piSos1zECijluCW0ErNyS\n"
    "WUjHSkJ4gvfyDQEHe15H4Vz9IAC1rvLiRriVOuxeeZx5/Z53ZNBJTvnsDQRNwCYC\n"
    "EUFM5NMA2hek9NN/1T9t0oo9tf9OFiMwVkqDMdFRv9X9nFi3dqS9cmneKxDEbgme\n"
    "D844997GoT0fx0mgMNBi3lj8WZ0riin3t7JFqT2dLIImDXnGcEh7UxNW+5ZaOwsZ\n"
    "PwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char TEST_RSA2_PRIV[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC+AfuTamMgS6As\n"
    "TRdvAQDGGCMGF7sOa6ofuNvdsVTpaWhG0L+i9MEInuhEa/Aj93IEkqyDB0OivtGk\n"
    "MarF+mduH0JLxWRDyATQwQnqsngfP58H5WW1pEChdOQyXbFQGcFzw0VivLb+inp4\n"
    "KjuSwXMRYvvecW72xl+XeR7UGVshzagSmMkgThCSmuP02y763gZRIXWm7oQT1Lm5\n"
    "2fcQ49tVvuW6Q9yUprWiNJ4rSAUZuH7j9WK5tyFrjlVNHfc+c8NzxwmPWODgQZUq\n"
    "YdXHma+QkCwmcs1j/tnGe7Ht+58qcfGjqxqbTmmzijWer+Bt4Pl3LPVwGZahUVOV\n"
    "K6yK055vAgMBAAECggEAO1MHJ1m6JWU3V12iiWf4w+DZXpeeMbxv24OuMiOh7VaZ\n"
    "1jJrAwgEFRr4ThSdX71sff0Fm8ty1KdbcTaIqVOrY3ijDGFPEtKqnjsHS535X1hP\n"
    "4PlArlvgSgjjDs6uA+Jmwiwfx9pAEG1QG6CkBQgdUzpihWtJSAdb5UFN3M8l4wF3\n"
    "VRgd+n0QYuqToLJhi3LP4OzSb7EEmu4HJbKfgx0dQUmp7T4Qxr50YHl3d+5Ncy1o\n"
    "7p6jJU/KfndP2jEOVqWP5DmiiLUvAFKSqBaGvL4cvKpLdFFA6CEgp8t4KPk7CGB6\n"
    "R2eeM2CaEBIoi4l0NMmGCms2HVClZe1iLlvWSZUKIQKBgQDdzPVUx0t2wiIzHfRJ\n"
    "DPXJJ6246PzgbXn2tpLBmVRyxqhKlurVRzooavWRXJRuQtQmgEo1vbTCKhzFa2Ns\n"
    "XEuSrDn1YgVd2YBbj3pq4Hus/o8fVZf3NgHG5XrJDPKaKulkSiKSoNzpzge82+t/\n"
    "rZJtFiD6XJ61NWsZU8YhgHEd1wKBgQDbThPqN/48brk3N3YyMtAzgbiORQtiF8V0\n"
    "X0MKQeFTaQsbEG5lpnY/Aq1Sme7ZWrjbDcYG+gVTvgfQq36iG4ieWnx0aEgUleLK\n"
    "0xBEp0AfHFZ5QOT68dXUVmFR6nN87vmX4q4ef4Z5m4q4pVD0Zygnfbs6ZnGDboRQ\n"
    "raqlUigBKQKBgQC4MZJ3Qj5YNGYkXzbUR5AB6hKp4crHMgM8MGh1oDjyTCnML8J7\n"
    "NfiFQjYG7oRRgOwfwSBfuthW+pQEGudpQMh92MsVDb75LjwbTW7TPPNYOdpvoixe\n"
    "Xxpgq4gpWLhL8WD7KVnGvRJYlAH3BAdxc5qLPvpKEAq439C+KsT6Y2kM5wKBgQCk\n"
    "Z+0gGqf60BsEHQz75wIUivw7k+FLwXximIPerbLpYAdWW8QXamqdJDmhggsAYTXR\n"
    "6op5cngJ5p1fPyGpD7Ek3bsNXZwj6pXh7cb1YNj+ObVOI2tGAYSHMda1nWjE0TbG\n"
    "OcbE0F+UzRl7AVwmTStaJ7TzvBb/LBv/i6IxW9znuQKBgAqCDz27J4CWZychtesh\n"
    "O2dlq4fafNRrHscHMLerZTFw1l5+UhErGNtT87Y1/Fj/qZXWT9a2Dg9a+igxXfdR\n"
    "I8dzOcqQm0iRe0FmAMJ6qlgjmCNkK0L8vEmgKIuGODo7+K2rzVDNm33kYnt+qcNb\n"
    "Q/csoXkb5MTHkHT9Wa/FIEh1\n"
    "-----END PRIVATE KEY-----\n";

static const char TEST_RSA2_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvgH7k2pjIEugLE0XbwEA\n"
    "xhgjBhe7DmuqH7jb3bFU6WloRtC/ovTBCJ7oRGvwI/dyBJKsgwdDor7RpDGqxfpn\n"
    "bh9CS8VkQ8gE0MEJ6rJ4Hz+fB+VltaRAoXTkMl2xUBnBc8NFYry2/op6eCo7ksFz\n"
    "EWL73nFu9sZfl3ke1BlbIc2oEpjJIE4Qkprj9Nsu+t4GUSF1pu6EE9S5udn3EOPb\n"
    "Vb7lukPclKa1ojSeK0gFGbh+4/Viubcha45VTR33PnPDc8cJj1jg4EGVKmHVx5mv\n"
    "kJAsJnLNY/7Zxnux7fufKnHxo6sam05ps4o1nq/gbeD5dyz1cBmWoVFTlSusitOe\n"
    "bwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char TEST_EC_PRIV[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKEGfUSzTvQL8LN64\n"
    "YbsfOTfzXcJnPAjADMOHd+1ZBPyhRANCAAQ9k6Ojj5oFKX68uQf+cKzhaBDo11z0\n"
    "KUXnLWIITJ4tMRCTcMB8wfJiVWnbjoERihcf1ttn8SLAPd41fFxg38gG\n"
    "-----END PRIVATE KEY-----\n";

static const char TEST_EC_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPZOjo4+aBSl+vLkH/nCs4WgQ6Ndc\n"
    "9ClF5y1iCEyeLTEQk3DAfMHyYlVp246BEYoXH9bbZ/EiwD3eNXxcYN/IBg==\n"
    "-----END PUBLIC KEY-----\n";

#endif
