"""A student's backprop for z1 = X @ theta1 + b1, h1 = sigmoid(z1), z2 = h1 @ theta2 + b2,
h2 = sigmoid(z2), L = 0.5 * sum((h2 - y)**2): the question's code, bugs included."""

import numpy as np


def backprop(X, y, theta1, b1, theta2, b2):
    z1 = X.dot(theta1) + b1
    h1 = 1 / (1 + np.exp(-z1))
    z2 = h1.dot(theta2) + b2
    h2 = 1 / (1 + np.exp(-z2))

    dh2 = h2 - y
    dz2 = dh2 * (1 - dh2)  # the bug: should be dh2 * h2 * (1 - h2)
    dW2 = h1.T.dot(dz2)
    db2 = np.sum(dz2, axis=0, keepdims=True)

    dz1 = dz2.dot(theta2.T) * h1 * (1 - h1)
    dW1 = X.T.dot(dz1)
    db1 = np.sum(dz1, axis=0, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dz2": dz2, "dW2": dW2, "db2": db2}
