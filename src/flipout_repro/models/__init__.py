"""Plain nn.Modules: the CIFAR VGG19/ResNet18 and DenseNet121 the FlipOut paper used, and LeNets.

Every model takes ``in_channels``, ``num_classes`` and ``input_size`` (the dataset's image side) and
declares ``min_input_size``, the smallest image side its downsampling supports.
"""
