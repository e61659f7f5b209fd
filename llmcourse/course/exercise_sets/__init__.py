"""One module per notebook, `nbNN`, registering that notebook's exercises ("NN.name").

`llmcourse.course.exercises.get/check/describe` import the right module on first use of a name;
`exercises.names()` imports them all. Topic modules never import the exercise machinery.
"""
